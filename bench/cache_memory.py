"""Peak memory of reading a large numeric feature cache, as a retrain reads it.

Writes a cache of ``--rows`` rows of 64 float64 (10M: 5.1 GB; synthetic numbers, written
with ``feature_cache.append_blocks`` as a fill writes them, so the file is in the page
cache as after a fill), then, in this process, with the peak (VmHWM) reset before each:
the featurizer's random subsample of 100k rows by id (``rows_of``), the pool's ids
(``pool_ids``) and five 50k-row scoring chunks (``rows_and_test_between``). Prints the
growth of the peak over the resident memory before each step. ``--module PATH`` reads
with another version of ``learning/feature_cache.py`` (e.g. one from git history), to
compare. No database.

    python bench/cache_memory.py [--rows 10000000] [--module /tmp/old_feature_cache.py]
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _status(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _step(name: str, fn) -> dict:
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    started = time.perf_counter()
    fn()
    row = {"step": name, "seconds": round(time.perf_counter() - started, 2),
           "peak_growth_mb": round(_status("VmHWM") - before)}
    print(f"{name:34s} {row['seconds']:6.2f} s   peak +{row['peak_growth_mb']} MB", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--module", help="another feature_cache.py to read with")
    parser.add_argument("--dir", help="cache directory (kept if given and already filled)")
    args = parser.parse_args()
    from learning import feature_cache as writer
    reader = writer
    if args.module:
        spec = importlib.util.spec_from_file_location("other_feature_cache", args.module)
        reader = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reader)
    directory = Path(args.dir or tempfile.mkdtemp(prefix="cache-memory-"))
    n, width, block = args.rows, 64, 25_000
    if not list(directory.glob("*.ids.npy")):
        rng = np.random.default_rng(0)
        rows = rng.normal(size=(block, width))
        started = time.perf_counter()
        writer.append_blocks(directory, n, width, (
            (np.arange(s, min(n, s + block), dtype=np.int64), rows[:min(n, s + block) - s],
             (np.arange(s, min(n, s + block)) % 10) == 0) for s in range(0, n, block)))
        print(f"wrote {n:,} rows in {time.perf_counter() - started:.1f} s to {directory}")
    wanted = np.sort(np.random.default_rng(1).choice(n, min(n, 100_000), replace=False))
    chunks = [(lo, lo + 49_999) for lo in np.linspace(0, n - 50_000, 5).astype(int)]
    results = [
        _step("100k rows by id (featurizer fit)", lambda: reader.rows_of(directory, wanted)),
        _step("pool ids", lambda: reader.pool_ids(directory)),
        _step("5 chunks of 50k rows", lambda: [
            float(reader.rows_and_test_between(directory, lo, hi)[1].sum())
            for lo, hi in chunks]),
    ]
    print(f"worst: +{max(r['peak_growth_mb'] for r in results)} MB over the resident memory")
    if not args.dir:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
