"""Which model should order the labeling queue: the served one, or the newest trained one?

The service serves a new version unless the project's held-out labels so far show it worse
than the served one (paired margins, learning/promotion_check.py; the macro-F1 check it had
before is the rule ``geq`` below). The pool used to be rescored by the *served* model, so a
served model that kept winning the macro-F1 check (on a few dozen held-out labels) went on
ordering the queue while newer versions, trained on more labels, were not promoted; now
every ready version rescores the pool itself. This replays
the adaptive default (``learning.simulation._replay_adaptive``'s loop, the same mix and
measurement) with that promotion check, twice per seed: the queue ordered by the newest
version, and by the served version. For each, it records test accuracy on the whole test
split of the newest version and of the served one (what clients get) after every batch, and
prints the mean curves, their areas and the paired per-seed area difference with its standard
error.

    python bench/queue_ranker.py        # digits, overlap, imbalanced (batch 10), mnist (batch 20)
    python bench/queue_ranker.py --only digits --seeds 20

``--rules`` compares promotion rules instead (the queue ordered by the newest version):
``margins`` (the service's: serve the new version unless the paired margins on the held-out
labels show it worse with 90% confidence), ``geq`` (the check before: serve it if its
macro-F1 is at least the served one's), ``latest`` (always serve it) and ``worseNN`` (serve
it unless its macro-F1 is lower in NN% or more of 1,000 bootstrap resamples of the held-out
rows, both versions scored on the same resampled rows). ``--junk 150-250`` gives every
pick made between 150 and 250 labels a uniformly random label, as a careless annotator
would; the curves are measured on the true test labels. The served version's area is
printed against the first rule's:

    python bench/queue_ranker.py --rules geq,latest,margins,worse90,worse75
    python bench/queue_ranker.py --rules geq,latest,margins,worse90,worse75 --junk 150-250

Writes bench/results/queue_ranker.json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# (data set, batch size, budget): MNIST at batch 20 is the demo project's setting.
CASES = (("digits", 10, 400), ("overlap", 10, 400), ("imbalanced", 10, 400), ("mnist", 20, 400))
RANKERS = ("newest", "served")


def worse_share(y, new_pred, served_pred, present, resamples: int = 1000, seed: int = 0) -> float:
    """Share of bootstrap resamples of the rows in which the new predictions' macro-F1 (over
    ``present``, as sklearn's with zero_division=0) is below the served ones'."""
    rng = np.random.default_rng(seed)
    n = len(y)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)

    def macro_f1(pred):
        total = np.zeros(resamples)
        for label in present:
            truth, said = (y == label), (pred == label)
            tp, fp, fn = (weights @ (truth & said), weights @ (~truth & said),
                          weights @ (truth & ~said))
            denominator = 2 * tp + fp + fn
            total += np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-12), 0.0)
        return total / len(present)

    return float((macro_f1(new_pred) - macro_f1(served_pred) < 0).mean())


def replay(name: str, batch: int, budget: int, seed: int, ranker: str, rule: str = "margins",
           junk: tuple[int, int] | None = None) -> list[tuple]:
    """[(labels, newest version's accuracy, served version's accuracy), ...] for one seed."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from learning import adaptive, promotion_check, simulation
    from learning.estimators import build_estimator
    from learning.featurizer_options import build as build_featurizer
    from learning.simulation_data import load_builtin

    dataset = load_builtin(name)
    y = np.asarray(dataset.y).astype(str)
    pool_idx, test_idx = train_test_split(np.arange(len(y)), test_size=simulation.TEST_FRACTION,
                                          stratify=y, random_state=simulation.SPLIT_SEED)
    featurizer = build_featurizer(dataset.kind, {})
    X_pool = featurizer.fit_transform(simulation._subset(dataset.X, pool_idx))
    X_test = featurizer.transform(simulation._subset(dataset.X, test_idx))
    y_pool, y_test = y[pool_idx], y[test_idx]
    if junk is not None:  # a careless annotator's labels, written as the picks are made
        y_pool, classes = y_pool.copy(), np.unique(y_pool)
        junk_rng = np.random.default_rng(seed + 17)
    estimator = build_estimator({"estimator": None, "params": {}}, kind=dataset.kind)
    with threadpool_limits(1):
        rng = np.random.default_rng(seed)
        n_pool = len(y_pool)
        order = list(rng.choice(n_pool, simulation.SEED_LABELS, replace=False))
        arm_of = np.full(n_pool, "", dtype=object)
        test_order = np.random.default_rng(seed + 7919).permutation(len(y_test))
        mix, served, curve = adaptive.Mix(), None, []
        while True:
            idx = np.sort(np.asarray(order))
            model = simulation._fit_or_none(estimator, X_pool, y_pool, idx)
            # The held-out labels a project has by now, as the adaptive replay assumes.
            seen = test_order[: max(1, math.ceil(simulation.ADAPTIVE_TEST_PER_LABEL * len(order)))]
            if model is not None:
                if served is None:
                    served = model
                else:  # promotion._promote_if_better, or another rule
                    present = sorted(set(y_test[seen]))
                    if rule == "geq" or rule.startswith("worse"):
                        new_pred = model.predict(X_test[seen])
                        served_pred = served.predict(X_test[seen])
                    if rule == "latest":
                        better = True
                    elif rule == "margins":  # the service's check (promotion_check)
                        better = not promotion_check.paired_verdict(
                            adaptive.test_scores(model, X_test[seen], y_test[seen]),
                            adaptive.test_scores(served, X_test[seen], y_test[seen])).worse
                    elif rule.startswith("worse"):
                        better = worse_share(y_test[seen], new_pred, served_pred, present,
                                             seed=len(idx)) < int(rule[5:]) / 100
                    else:
                        new_f1, served_f1 = (
                            f1_score(y_test[seen], pred, labels=present, average="macro",
                                     zero_division=0) for pred in (new_pred, served_pred))
                        better = new_f1 >= served_f1
                    if better:
                        served = model
            curve.append((len(idx),
                          float(accuracy_score(y_test, model.predict(X_test))) if model else 0.0,
                          float(accuracy_score(y_test, served.predict(X_test))) if served else 0.0))
            ranking = model if ranker == "newest" else served
            if ranking is not None:
                mix = simulation._adaptive_measure(adaptive, mix, estimator, ranking, X_pool,
                                                   y_pool, np.asarray(order), arm_of, X_test,
                                                   y_test, test_order, rng)
            if len(idx) >= budget or len(idx) == n_pool:
                return curve
            unlabeled = np.setdiff1d(np.arange(n_pool), idx)
            picked, arms = adaptive.select_mix(ranking, X_pool[unlabeled],
                                               n=min(batch, budget - len(idx)), mix=mix,
                                               seed=seed * 100_003 + len(idx))
            arm_of[unlabeled[picked]] = arms
            if junk is not None and junk[0] <= len(order) < junk[1]:
                y_pool[unlabeled[picked]] = junk_rng.choice(classes, size=len(picked))
            order.extend(unlabeled[picked].tolist())


def _setup() -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()


def _job(*args):
    _setup()
    return replay(*args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--only", help="comma-separated data sets (default: all four)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "queue_ranker.json"))
    parser.add_argument("--rules", help="compare these promotion rules instead (geq, latest, "
                        "margins, worseNN), the queue ordered by the newest version")
    parser.add_argument("--junk", help="LO-HI: picks made between LO and HI labels get "
                        "random labels (with --rules)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if args.rules:
        return compare_rules(args, only)
    started, rows = time.perf_counter(), []
    print(f"{'data set':<12}{'batch':>6} {'queue by':<8}{'area newest':>12}{'area served':>12}"
          f"   curve of the served version (labels: accuracy)")
    for name, batch, budget in CASES:
        if only and name not in only:
            continue
        jobs = [(name, batch, budget, seed, ranker) for ranker in RANKERS
                for seed in range(args.seeds)]
        curves = Parallel(n_jobs=args.jobs)(delayed(_job)(*job) for job in jobs)
        by = {ranker: [c for (_n, _b, _bu, _s, r), c in zip(jobs, curves) if r == ranker]
              for ranker in RANKERS}
        row = {"dataset": name, "batch_size": batch, "budget": budget, "seeds": args.seeds}
        for ranker in RANKERS:
            labels = [p[0] for p in by[ranker][0]]
            newest = np.mean([[p[1] for p in c] for c in by[ranker]], axis=0)
            served = np.mean([[p[2] for p in c] for c in by[ranker]], axis=0)
            row[ranker] = {"labels": labels, "newest": newest.round(5).tolist(),
                           "served": served.round(5).tolist(),
                           "area_newest": round(float(newest.mean()), 5),
                           "area_served": round(float(served.mean()), 5)}
            marks = [i for i, n in enumerate(labels) if n in (50, 100, 200, 400)]
            print(f"{name:<12}{batch:>6} {ranker:<8}{newest.mean():>12.4f}{served.mean():>12.4f}"
                  "   " + "  ".join(f"{labels[i]}: {served[i]:.3f}" for i in marks), flush=True)
        for k, which in ((1, "newest"), (2, "served")):
            diffs = np.asarray([np.mean([p[k] for p in a]) - np.mean([p[k] for p in b])
                                for a, b in zip(by["newest"], by["served"])])
            se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else None
            row[f"area_{which}_difference"] = {"mean": round(float(diffs.mean()), 5),
                                               "se": None if se is None else round(se, 5),
                                               "seeds_better": int((diffs > 0).sum())}
            print(f"{'':<12}{'':>6} queue by the newest minus by the served, {which} version's "
                  f"area: {diffs.mean():+.4f} (SE {se or 0:.4f}), better in {(diffs > 0).sum()} of "
                  f"{len(diffs)} seeds", flush=True)
        rows.append(row)
    return _write({"seconds": round(time.perf_counter() - started, 1), "rows": rows}, args.out)


def _write(summary: dict, path: str) -> int:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nwrote {out} in {summary['seconds']:.0f}s")
    return 0


def compare_rules(args, only) -> int:
    """The served version's area under each promotion rule, against the first rule's."""
    rules = args.rules.split(",")
    for rule in rules:
        known = rule in ("geq", "latest", "margins")
        if not known and not (rule.startswith("worse") and rule[5:].isdigit()):
            raise SystemExit(f"unknown rule {rule!r}: geq, latest, margins or worseNN")
    junk = tuple(int(v) for v in args.junk.split("-")) if args.junk else None
    started, rows = time.perf_counter(), []
    print(f"junk labels: {'none' if junk is None else f'picks at {junk[0]}-{junk[1]} labels'}")
    for name, batch, budget in CASES:
        if only and name not in only:
            continue
        jobs = [(name, batch, budget, seed, "newest", rule, junk) for rule in rules
                for seed in range(args.seeds)]
        curves = Parallel(n_jobs=args.jobs)(delayed(_job)(*job) for job in jobs)
        served = {rule: np.asarray([np.mean([p[2] for p in c]) for job, c in zip(jobs, curves)
                                    if job[5] == rule]) for rule in rules}
        for rule in rules:
            diffs = served[rule] - served[rules[0]]
            se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else 0.0
            rows.append({"dataset": name, "batch_size": batch, "budget": budget, "rule": rule,
                         "junk": junk, "seeds": args.seeds,
                         "area_served": round(float(served[rule].mean()), 5),
                         "difference": round(float(diffs.mean()), 5), "se": round(se, 5),
                         "seeds_better": int((diffs > 0).sum())})
            print(f"{name:<12}{batch:>6} {rule:<8} served version's area "
                  f"{served[rule].mean():.4f}, minus {rules[0]}'s {diffs.mean():+.4f} "
                  f"(SE {se:.4f}), better in {(diffs > 0).sum()} of {len(diffs)} seeds",
                  flush=True)
    return _write({"seconds": round(time.perf_counter() - started, 1), "rules": rows}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
