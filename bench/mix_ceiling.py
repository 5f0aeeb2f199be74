"""How close the adaptive default can come to its uncertainty arm alone: the mix's ceiling.

Issue 17 asks the default (a measured mix of ``diverse_margin`` and random picks, see
learning/adaptive.py) to reach 99% of full accuracy on digits at batch 10 with at most 0.4x
random's labels, and never to need more than 1.05x random's labels anywhere. The second
target is why the mix keeps random picks (a share floor of 0.1, half random at the start)
and measures the arms on the held-out labels a project has (one per four labels). This
bench replays, on the same seeds, the mix with each of those two costs taken away, so the
first target can be set against what any such mix could do:

- ``random``, ``margin``, ``diverse_margin``: single strategies, as bench/al_efficiency.py;
- ``default``: the service's mix;
- ``default, every test row``: the mix measured on the whole test split from the first
  label (540 rows on digits, where a project at 300 labels holds about 75);
- ``default, every test row, floor 0.02``: the same with the share floor at 0.02;
- ``fixed 0.9 margin``: no measurement at all, 90% ``diverse_margin`` from the first pick:
  a mix told the winner in advance that keeps the service's floor of random picks.

Each variant runs in its own process (the variants set learning.adaptive's and
learning.simulation's module constants there, nowhere else), with the replay code of
``manage.py simulate``. Prints labels to 95% / 99% (median over seeds, and as a multiple of
random's) and the area under the learning curve with its paired per-seed difference from
random's; writes bench/results/mix_ceiling.json.

    python bench/mix_ceiling.py                      # digits, batch 10, 30 seeds: ~10 min
    python bench/mix_ceiling.py --seeds 10 --only default,fixed_0.9
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds a queue.py of its own; keep it from shadowing the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from concurrent.futures import ProcessPoolExecutor  # noqa: E402

from learning import adaptive, simulation  # noqa: E402

# name: (strategy, settings). Settings: "test_per_label" (the held-out rows per label the
# mix is measured on), "floor" (the share floor), "fixed" (margin's share, no measurement).
VARIANTS = {
    "random": ("random", {}),
    "margin": ("margin", {}),
    "diverse_margin": ("diverse_margin", {}),
    "default": ("default", {}),
    "all_test_rows": ("default", {"test_per_label": 1e9}),
    "all_test_rows_floor_0.02": ("default", {"test_per_label": 1e9, "floor": 0.02}),
    "fixed_0.9": ("default", {"fixed": 0.9}),
}
RESULTS = ROOT / "bench" / "results"


def _configure(settings: dict) -> None:
    """Set this process's module constants for one variant."""
    if "test_per_label" in settings:
        simulation.ADAPTIVE_TEST_PER_LABEL = settings["test_per_label"]
    if "floor" in settings:
        adaptive.SHARE_FLOOR = settings["floor"]
        # Keep the start at START_SHARES (Z_OFFSET is where z = 0 lands for this floor).
        start = adaptive.START_SHARES["margin"]
        adaptive.Z_OFFSET = -math.sqrt(2.0) * adaptive._erfinv(
            2.0 * (start - adaptive.SHARE_FLOOR) / (1.0 - 2.0 * adaptive.SHARE_FLOOR) - 1.0)
    if "fixed" in settings:
        adaptive.START_SHARES.update(margin=settings["fixed"], random=1.0 - settings["fixed"])
        adaptive.measure = lambda mix, **_kwargs: mix


def run_variant(name: str, dataset: str, batch: int, seeds: int) -> dict:
    strategy, settings = VARIANTS[name]
    _configure(settings)
    result = simulation.simulate(simulation.load_builtin(dataset), strategies_=(strategy,),
                                 batch_size=batch, seeds=seeds, n_jobs=1)
    data = result["strategies"][strategy]
    return {"variant": name, "strategy": strategy, "settings": {k: str(v) for k, v in
                                                                settings.items()},
            "labels_to_95": data["labels_to_95"], "labels_to_99": data["labels_to_99"],
            "area_by_seed": data["area_by_seed"], "n_test": result["n_test"],
            "budget": result["budget"], "full_accuracy": result["full_accuracy"],
            "seconds": result["seconds"]}


def _times(value, base) -> str:
    return "-" if value is None or base is None else f"{value / base:.2f}x"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--only", help="comma-separated variants (random always runs)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "mix_ceiling.json"))
    args = parser.parse_args(argv)
    names = list(VARIANTS)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - set(VARIANTS)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
        names = ["random", *(n for n in VARIANTS if n in wanted and n != "random")]
    started = time.perf_counter()
    # A fresh process per variant: one variant's settings never reach another's.
    with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_variant, name, args.data, args.batch, args.seeds)
                   for name in names]
        rows = [future.result() for future in futures]
    base = rows[0]
    print(f"{args.data}, batch {args.batch}, {args.seeds} seeds, full accuracy "
          f"{base['full_accuracy']:.4f}, {base['n_test']} test rows, budget {base['budget']}")
    header = (f"{'variant':<26}{'to 95%':>8}{'x rnd':>7}{'to 99%':>8}{'x rnd':>7}"
              f"{'area':>8}  {'area - random (SE)':>19}")
    print(header)
    print("-" * len(header))
    for row in rows:
        seeds = len(row["area_by_seed"])
        row["area"] = round(sum(row["area_by_seed"]) / seeds, 5)
        diffs = [a - b for a, b in zip(row["area_by_seed"], base["area_by_seed"])]
        mean = sum(diffs) / seeds
        se = (sum((d - mean) ** 2 for d in diffs) / (seeds - 1) / seeds) ** 0.5 if seeds > 1 else 0
        row["area_vs_random"], row["area_vs_random_se"] = round(mean, 5), round(se, 5)
        for level in ("95", "99"):
            mine, random_ = row[f"labels_to_{level}"], base[f"labels_to_{level}"]
            row[f"ratio_{level}"] = (None if mine is None or random_ is None
                                     else round(mine / random_, 3))
        spread = "" if row is base else f"  {mean:+.4f} ({se:.4f})"
        print(f"{row['variant']:<26}{_fmt(row['labels_to_95']):>8}"
              f"{_times(row['labels_to_95'], base['labels_to_95']):>7}"
              f"{_fmt(row['labels_to_99']):>8}"
              f"{_times(row['labels_to_99'], base['labels_to_99']):>7}"
              f"{row['area']:>8.4f}{spread}", flush=True)
    summary = {"data": args.data, "batch": args.batch, "seeds": args.seeds,
               "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nwrote {out} in {summary['seconds']:.0f}s")
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    sys.exit(main())
