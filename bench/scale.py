"""Scale-out: import and retrain + rescore a big tabular pool, 1 vs 2 workers, disk vs S3.

For each pool size (``--rows``, default 1M and 10M; 64 numeric features, 2,000 labeled
rows): a CSV file is imported through the import service (rows/s, wall and CPU, and the
importing process's peak memory); then, for each worker count (``--workers``) and storage
(``--storage``: ``local``, one shared disk, or ``s3``, a moto S3 server in server mode on
127.0.0.1 where each worker has local directories of its own, as tests/integration does),
Celery workers (one prefork process each, every queue) are started and retrains are timed
from the request the last label of a batch makes to the new version served
(``served_s``) and to the whole pool rescored (``total_s``; ``score_s`` is the
rescoring part, from the version's own timer). The first retrain of each configuration
also fits the featurizer and fills the feature cache: reported apart, not in the
medians. Peak memory per worker is the largest VmHWM among each worker's processes,
read before it is stopped. Every row carries the load average around it: the machine is
shared, so ratios within one run are what count.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotation_scale \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 python bench/scale.py [--rows 1000000] [--quick]

Prints one line per configuration and the targets of issue 15, and writes
bench/results/scale.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds a queue.py of its own; keep it from shadowing the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.pools import (  # noqa: E402
    env_defaults, one_retrain, populate, setup_django, start_workers, stop_workers,
    worker_peaks_mb,
)

env_defaults("annotation_scale")
WORK = Path(tempfile.mkdtemp(prefix="bench-scale-"))
ARTIFACTS = Path(os.environ.setdefault("ARTIFACT_ROOT", str(WORK / "artifacts")))

S3_KEYS = {"AWS_S3_REGION_NAME": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench"}
BUCKET = "bench-scale"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def s3_start(port: int) -> tuple[subprocess.Popen, dict]:
    """A moto S3 server (server mode, a subprocess) with one bucket; returns its settings."""
    import boto3

    log = open(WORK / "moto.log", "wb")  # noqa: SIM115 (kept open for the server's life)
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint,
                          region_name=S3_KEYS["AWS_S3_REGION_NAME"],
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001 (not listening yet)
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto did not start: {(WORK / 'moto.log').read_text()}")
            time.sleep(0.2)
    return process, {"AWS_S3_ENDPOINT_URL": endpoint, **S3_KEYS}


def worker_envs(storage: str, n: int, s3: dict | None, project_id: int) -> list[dict]:
    """Each worker's settings. ``local``: the shared ARTIFACT_ROOT, emptied of the
    project's featurizer and feature cache (the state an import leaves). ``s3``: a fresh
    prefix in the bucket, and local directories of each worker's own, as on separate
    machines."""
    if storage == "local":
        for cache in ("featurizers", "features"):
            shutil.rmtree(ARTIFACTS / cache / str(project_id), ignore_errors=True)
        return [{} for _ in range(n)]
    url = f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"
    envs = []
    for i in range(n):
        disk = WORK / f"machine-{uuid.uuid4().hex[:8]}-{i}"
        envs.append({"STORAGE_URL": url, **s3, "MEDIA_ROOT": str(disk / "media"),
                     "ARTIFACT_ROOT": str(disk / "artifacts"),
                     "LOCAL_CACHE_DIR": str(disk / "cache")})
    return envs


def configuration(project, n: int, storage: str, n_workers: int, s3: dict | None,
                  args) -> dict:
    load_before = _load()
    procs = start_workers(n_workers, envs=worker_envs(storage, n_workers, s3, project.pk),
                          name=f"scale-{storage}", log_dir=WORK)
    try:
        first = one_retrain(project, args.timeout)
        runs = [one_retrain(project, args.timeout) for _ in range(args.reps)]
        peaks = worker_peaks_mb(procs)
    finally:
        stop_workers(procs)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 2)

    return {
        "pool": n, "storage": storage, "workers": n_workers, "reps": args.reps,
        "median_total_s": median("total_s"), "median_served_s": median("served_s"),
        "median_fit_s": median("fit_s"), "median_score_s": median("score_s"),
        "runs_total_s": [round(r["total_s"], 2) for r in runs],
        "runs_score_s": [round(r["score_s"], 2) for r in runs],
        "first_total_s": round(first["total_s"], 2), "first_score_s": round(first["score_s"], 2),
        "chunks": runs[-1]["chunks"], "scored": runs[-1]["scored"],
        "worker_peak_mb": peaks, "load_before": load_before, "load_after": _load(),
    }


def _reusable(n: int):
    """The project a previous run imported with ``n`` samples, if it is still whole."""
    from annotation.models import Project

    project = Project.objects.filter(slug=f"scale-tabular-{n}").first()
    if project is None or project.samples.count() != n:
        return None
    print(f"tabular {n}: reusing the pool imported before", flush=True)
    return project


def _find(results: list[dict], **match) -> dict | None:
    return next((r for r in results if all(r.get(k) == v for k, v in match.items())), None)


def targets(results: list[dict], imports: dict[int, dict]) -> list[str]:
    """Issue 15's targets, each met, not met or not measured (and never extrapolated)."""
    lines = []
    big = _find(results, pool=10_000_000, storage="local", workers=2)
    lines.append("10M rescoring <= 60 s with 2 workers: " + (
        f"{big['median_score_s']:.1f} s, {'met' if big['median_score_s'] <= 60 else 'NOT met'}"
        if big else "not measured"))
    one = _find(results, pool=10_000_000, storage="local", workers=1)
    if big and one:
        ratio = one["median_score_s"] / big["median_score_s"]
        lines.append(f"2 workers vs 1, rescoring at 10M >= 1.6x: {ratio:.2f}x, "
                     f"{'met' if ratio >= 1.6 else 'NOT met'}")
    else:
        lines.append("2 workers vs 1, rescoring at 10M >= 1.6x: not measured")
    for workers in (1, 2):
        local = _find(results, pool=1_000_000, storage="local", workers=workers)
        s3 = _find(results, pool=1_000_000, storage="s3", workers=workers)
        if local and s3:
            ratio = s3["median_total_s"] / local["median_total_s"]
            lines.append(f"retrain at 1M, S3 vs local <= 1.2x ({workers} worker(s)): "
                         f"{ratio:.2f}x, {'met' if ratio <= 1.2 else 'NOT met'}")
        else:
            lines.append(f"retrain at 1M, S3 vs local <= 1.2x ({workers} worker(s)): "
                         "not measured")
    peaks = [p for r in results if r["pool"] == 10_000_000 for p in r["worker_peak_mb"]]
    lines.append("peak memory per worker at 10M <= 1 GB: " + (
        f"{max(peaks):.0f} MB, {'met' if max(peaks) <= 1024 else 'NOT met'}"
        if peaks else "not measured"))
    for n, stats in sorted(imports.items()):
        lines.append(f"import {n:,} rows: {stats['rows_per_s']:,} rows/s "
                     f"({stats['rows_per_cpu_s']:,} per CPU s), peak {stats['import_peak_mb']} MB")
    return lines


def _write(payload: dict) -> Path:
    out = ROOT / "bench" / "results" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="pool sizes")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--storage", default="local,s3")
    parser.add_argument("--labels", type=int, default=2000, help="labeled rows in each file")
    parser.add_argument("--reps", type=int, default=2, help="timed retrains after the first")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--s3-port", type=int, default=18400)
    parser.add_argument("--import-rows", type=int, default=None,
                        help="import only this many rows of each pool through the import "
                             "path and add the rest in SQL (copies of their values)")
    parser.add_argument("--reuse-pool", action="store_true",
                        help="keep a pool a previous run imported (no import figures)")
    parser.add_argument("--quick", action="store_true",
                        help="a 100k pool, one timed retrain per configuration")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.reps = "100000", 1
    sizes = [int(n) for n in args.rows.split(",") if n]
    storages = [s for s in args.storage.split(",") if s]
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    setup_django()
    s3_process, s3 = s3_start(args.s3_port) if "s3" in storages else (None, None)
    payload = {"what": "import; retrain: last label -> new version served, pool rescored",
               "machine_cores": os.cpu_count(), "imports": {}, "results": []}
    try:
        for n in sizes:
            project = _reusable(n) if args.reuse_pool else None
            if project is None:
                load = _load()
                project, stats = populate("tabular", n, args.labels, slug_prefix="scale",
                                          import_rows=args.import_rows)
                payload["imports"][n] = {**stats, "load_before": load, "load_after": _load()}
            _write(payload)
            for n_workers in worker_counts:  # storages side by side: their ratio counts
                for storage in storages:
                    row = configuration(project, n, storage, n_workers, s3, args)
                    payload["results"].append(row)
                    _write(payload)
                    print(f"{n:>9,} {storage:5s} workers={n_workers}  median: served "
                          f"{row['median_served_s']:.1f} s, rescored {row['median_total_s']:.1f} s "
                          f"(fit {row['median_fit_s']:.1f} s, rescoring {row['median_score_s']:.1f}"
                          f" s, {row['chunks']} chunks)  first {row['first_total_s']:.1f} s  "
                          f"peak/worker {row['worker_peak_mb']} MB  load {row['load_before']}"
                          f" -> {row['load_after']}", flush=True)
    finally:
        if s3_process is not None:
            s3_process.terminate()
            s3_process.wait(timeout=20)
    payload["targets"] = targets(payload["results"],
                                 {int(k): v for k, v in payload["imports"].items()})
    print("\n".join(["", "targets (issue 15):", *payload["targets"]]))
    print(f"wrote {_write(payload)}")


if __name__ == "__main__":
    main()
