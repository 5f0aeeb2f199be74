"""Replay active learning on fully labeled data to measure how many labels each strategy needs.

ORM-free: sources are files, builtin data sets, or rows a selector already read.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from learning import featurizer_options, strategies
from learning.estimators import DEFAULT_ESTIMATOR, DEFAULT_ESTIMATOR_BY_KIND, build_estimator
from learning.simulation_data import (  # noqa: F401 (the simulate command's and tests' names)
    BUILTINS,
    GENERATED,
    Dataset,
    SimulationError,
    dataset_from_frame,
    generated_dataset,
    load_builtin,
    load_source,
    topics_corpus,
)

# Every strategy a project can choose, random (the baseline) first.
DEFAULT_STRATEGIES = ("random", *(name for name in strategies.STRATEGIES if name != "random"))
DEFAULT_BUDGET = 2000
TEST_FRACTION = 0.3
SEED_LABELS = 10
SPLIT_SEED = 0


def _subset(X, idx: np.ndarray):
    if isinstance(X, pd.DataFrame):
        return X.iloc[idx]
    if isinstance(X, list):
        return [X[i] for i in idx]
    return X[idx]


def _labels_to(curves: list[list[tuple[int, float, float]]], target: float) -> float | None:
    firsts = []
    for curve in curves:
        firsts.append(next((n for n, acc, _f1 in curve if acc >= target), math.inf))
    median = float(np.median(firsts))
    if math.isinf(median):
        return None
    return int(median) if median.is_integer() else median


def curve_area(labels, accuracy) -> float:
    """Area under a learning curve over its label range (trapezoids): its mean accuracy."""
    labels, accuracy = list(labels), list(accuracy)
    if len(labels) < 2:
        return round(float(accuracy[0]), 5) if accuracy else 0.0
    total = sum((labels[i + 1] - labels[i]) * (accuracy[i] + accuracy[i + 1]) / 2
                for i in range(len(labels) - 1))
    return round(float(total / (labels[-1] - labels[0])), 5)


def _scores(model, X_test, y_test, y_labeled) -> tuple[float, float]:
    """Test accuracy and macro-F1 (over the classes in the test split, as training does)."""
    if model is None:  # one class so far: the only sensible guess is that class
        predicted = np.full(len(y_test), y_labeled[0])
    else:
        predicted = model.predict(X_test)
    return (float(accuracy_score(y_test, predicted)),
            float(f1_score(y_test, predicted, labels=np.unique(y_test), average="macro",
                           zero_division=0)))


def _replay(X_pool, y_pool, X_test, y_test, *, estimator, strategy: str, seed: int,
            batch_size: int, budget: int, seed_labels: int) -> list[tuple[int, float, float]]:
    """Return [(labels, test accuracy, macro-F1), ...] of one strategy from one seed set."""
    with threadpool_limits(1):
        n_pool = len(y_pool)
        labeled = np.zeros(n_pool, dtype=bool)
        labeled[np.random.default_rng(seed).choice(n_pool, seed_labels, replace=False)] = True
        curve = []
        while True:
            idx = np.flatnonzero(labeled)
            model = None
            if len(np.unique(y_pool[idx])) >= 2:
                model = clone(estimator).fit(X_pool[idx], y_pool[idx])
            curve.append((int(labeled.sum()), *_scores(model, X_test, y_test, y_pool[idx])))
            if labeled.sum() >= budget or labeled.all():
                return curve
            unlabeled = np.flatnonzero(~labeled)
            n = min(batch_size, budget - int(labeled.sum()))
            picked = strategies.select_batch(
                model, X_pool[unlabeled], n=n, strategy=strategy, X_labeled=X_pool[idx],
                seed=seed * 100_003 + int(labeled.sum()),
            )
            labeled[unlabeled[picked]] = True


# The adaptive default measures its arms on the test labels a project would have: with the
# service's default test_fraction of 0.2, one test label per four pool labels.
ADAPTIVE_TEST_PER_LABEL = 0.25


def _replay_adaptive(X_pool, y_pool, X_test, y_test, *, estimator, seed: int,
                     batch_size: int, budget: int, seed_labels: int,
                     trace: list | None = None) -> list[tuple[int, float, float]]:
    """Replay the adaptive ``default`` (``learning.adaptive``); the curve as in ``_replay``.

    The mix is measured only on the first ``ADAPTIVE_TEST_PER_LABEL`` x labels rows of a
    seeded permutation of the test split, as a project sees its held-out labels grow; the
    curve is measured on the whole split, like every other strategy's. ``trace`` (a list)
    receives the mix after each measurement.
    """
    from learning import adaptive

    with threadpool_limits(1):
        rng = np.random.default_rng(seed)
        n_pool = len(y_pool)
        order = list(rng.choice(n_pool, seed_labels, replace=False))  # rows in label order
        arm_of = np.full(n_pool, "", dtype=object)  # the seed set has no arm
        test_order = np.random.default_rng(seed + 7919).permutation(len(y_test))
        mix = adaptive.Mix()
        curve = []
        while True:
            idx = np.sort(np.asarray(order))
            model = _fit_or_none(estimator, X_pool, y_pool, idx)
            curve.append((len(idx), *_scores(model, X_test, y_test, y_pool[idx])))
            if model is not None:
                mix = _adaptive_measure(adaptive, mix, estimator, model, X_pool, y_pool,
                                        np.asarray(order), arm_of,
                                        X_test, y_test, test_order, rng)
                if trace is not None:
                    trace.append({"labels": len(idx), **mix.shares,
                                  **(mix.history[-1] if mix.history else {})})
            if len(idx) >= budget or len(idx) == n_pool:
                return curve
            unlabeled = np.setdiff1d(np.arange(n_pool), idx)
            n = min(batch_size, budget - len(idx))
            picked, arms = adaptive.select_mix(model, X_pool[unlabeled], n=n, mix=mix,
                                               seed=seed * 100_003 + len(idx))
            arm_of[unlabeled[picked]] = arms
            order.extend(unlabeled[picked].tolist())


def _adaptive_measure(adaptive, mix, estimator, model, X_pool, y_pool, order, arm_of,
                      X_test, y_test, test_order, rng):
    """Add each arm's newest picks to the older labels, refit, compare on the test rows a
    project would have by now."""
    seen = test_order[: max(1, math.ceil(ADAPTIVE_TEST_PER_LABEL * len(order)))]
    X_seen, y_seen = X_test[seen], y_test[seen]
    recent = adaptive.window(order)
    older = order[: len(order) - len(recent)]
    picks = {arm: recent[arm_of[recent] == arm] for arm in adaptive.ARMS}

    def score_with(rows):
        kept = np.concatenate([older, rows])
        fitted = _fit_or_none(estimator, X_pool, y_pool, kept)
        if fitted is None:
            return (y_seen == y_pool[kept][0]).astype(float)
        return adaptive.test_scores(fitted, X_seen, y_seen)

    if len(older) == 0 or not all(len(p) for p in picks.values()):
        return mix
    return adaptive.measure(mix, picks=picks, base=score_with(np.empty(0, dtype=np.int64)),
                            score_with=score_with, labels=len(order), rng=rng)


def _fit_or_none(estimator, X, y, rows):
    if len(np.unique(y[rows])) < 2:
        return None
    return clone(estimator).fit(X[rows], y[rows])


def simulate(
    dataset: Dataset, *, strategies_: tuple[str, ...] | list[str] = DEFAULT_STRATEGIES,
    batch_size: int = 10, budget: int | None = None, seeds: int = 5,
    model: str | None = None, model_params: dict | None = None,
    featurizer_params: dict | None = None, seed_labels: int = SEED_LABELS,
    test_fraction: float = TEST_FRACTION, n_jobs: int = 1,
) -> dict:
    """Replay each strategy from ``seeds`` seed sets and return curves and labels-to-95/99%.

    The test split is fixed (stratified, ``test_fraction``) so that every strategy and seed
    is measured on the same rows; featurizers are fitted on the pool, as in a project.
    """
    started = time.perf_counter()
    for name in strategies_:
        if name not in strategies.BATCH_STRATEGIES:
            raise SimulationError(f"unknown strategy {name!r}; choose from "
                                  f"{strategies.BATCH_STRATEGIES}")
    if batch_size < 1 or seeds < 1:
        raise SimulationError("batch size and seeds must be at least 1")
    y = np.asarray(dataset.y).astype(str)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise SimulationError(f"labels of only one class ({classes[0] if len(classes) else 'none'!r}); "
                              "need at least two")
    if counts.min() < 2:
        rare = classes[counts < 2].tolist()
        raise SimulationError(f"classes {rare} have a single example; a stratified test "
                              "split needs at least two per class")
    index = np.arange(len(y))
    try:
        pool_idx, test_idx = train_test_split(index, test_size=test_fraction, stratify=y,
                                              random_state=SPLIT_SEED)
    except ValueError as exc:
        raise SimulationError(f"cannot split {len(y)} rows into pool and test: {exc}") from exc
    if len(pool_idx) <= seed_labels:
        raise SimulationError(f"a pool of {len(pool_idx)} rows leaves nothing to query after "
                              f"{seed_labels} seed labels")
    featurizer = featurizer_options.build(dataset.kind, featurizer_params)
    featurize_started = time.perf_counter()
    X_pool = featurizer.fit_transform(_subset(dataset.X, pool_idx))
    X_test = featurizer.transform(_subset(dataset.X, test_idx))
    featurize_seconds = time.perf_counter() - featurize_started
    y_pool, y_test = y[pool_idx], y[test_idx]
    estimator = build_estimator({"estimator": model, "params": model_params or {}},
                                kind=dataset.kind)
    full_accuracy = float(accuracy_score(y_test, clone(estimator).fit(X_pool, y_pool)
                                         .predict(X_test)))
    budget = min(budget or DEFAULT_BUDGET, len(pool_idx))
    jobs = [(name, seed) for name in strategies_ for seed in range(seeds)]
    curves = Parallel(n_jobs=n_jobs)(
        delayed(_replay_adaptive)(X_pool, y_pool, X_test, y_test, estimator=estimator,
                                  seed=seed, batch_size=batch_size, budget=budget,
                                  seed_labels=seed_labels)
        if name == "default" else
        delayed(_replay)(X_pool, y_pool, X_test, y_test, estimator=estimator, strategy=name,
                         seed=seed, batch_size=batch_size, budget=budget,
                         seed_labels=seed_labels)
        for name, seed in jobs
    )
    by_strategy: dict[str, list] = {name: [] for name in strategies_}
    for (name, _seed), curve in zip(jobs, curves):
        by_strategy[name].append(curve)
    results = {}
    for name, runs in by_strategy.items():
        counts_ = [n for n, _acc, _f1 in runs[0]]
        mean = np.mean([[acc for _n, acc, _f1 in run] for run in runs], axis=0)
        mean_f1 = np.mean([[f1 for _n, _acc, f1 in run] for run in runs], axis=0)
        results[name] = {
            "labels_to_95": _labels_to(runs, 0.95 * full_accuracy),
            "labels_to_99": _labels_to(runs, 0.99 * full_accuracy),
            "curve": [[n, round(float(a), 5)] for n, a in zip(counts_, mean)],
            "curve_macro_f1": [[n, round(float(f), 5)] for n, f in zip(counts_, mean_f1)],
            "final_accuracy": round(float(mean[-1]), 5),
            # per seed, in seed order: paired with another strategy's, the area's difference
            # has a standard error (the seeds share the test split and the seed labels)
            "area_by_seed": [curve_area([n for n, _a, _f in run], [a for _n, a, _f in run])
                             for run in runs],
        }
    return {
        "source": dataset.name, "kind": dataset.kind,
        "model": estimator_name(model, dataset.kind),
        "featurizer": featurizer_options.featurizer_name(
            {"featurizer": featurizer_params}, dataset.kind),
        "featurize_seconds": round(featurize_seconds, 2),
        "classes": classes.tolist(), "n_pool": len(pool_idx), "n_test": len(test_idx),
        "n_features": int(X_pool.shape[1]), "batch_size": batch_size, "budget": budget,
        "seeds": seeds, "seed_labels": seed_labels, "test_fraction": test_fraction,
        "full_accuracy": full_accuracy, "strategies": results,
        "seconds": round(time.perf_counter() - started, 2),
    }


def estimator_name(model: str | None, kind: str) -> str:
    return model or DEFAULT_ESTIMATOR_BY_KIND.get(kind, DEFAULT_ESTIMATOR)


def write_result(result: dict, path: Path) -> None:
    """Write ``result`` as JSON to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def plot_curves(result: dict, path: Path) -> None:
    """Draw mean test accuracy against labels per strategy, with the 95% and 99% lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, data in result["strategies"].items():
        curve = np.asarray(data["curve"])
        ax.plot(curve[:, 0], curve[:, 1], label=name, lw=1.8 if name == "default" else 1.2)
    full = result["full_accuracy"]
    for share in (0.95, 0.99):
        ax.axhline(share * full, color="grey", ls=":", lw=1)
        ax.text(ax.get_xlim()[1], share * full, f" {share:.0%}", va="center", fontsize=8)
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title(f"{result['source']} · {result['model']} · batch {result['batch_size']} · "
                 f"{result['seeds']} seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
