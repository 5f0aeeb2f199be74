"""Which labels are probably wrong: out-of-sample class probabilities and confident learning.

Plain numbers in, plain numbers out (no database), so the service that judges a project's
labels and ``bench/label_errors.py`` run the same code.

Confident learning (Northcutt, Jiang and Chuang, JAIR 2021) comes from ``cleanlab``
(Apache-2.0, by the method's authors): per class, the threshold is the mean predicted
probability of that class over the samples labeled with it; a sample whose probability of
another class reaches that class's threshold counts in an off-diagonal cell of the
"confident joint"; the joint, calibrated to the label counts, says how many labels of
class i are probably class j, and that many samples of each cell, those with the largest
margin for j, are flagged (``prune_by_noise_rate``). Flagged samples are ranked by
self-confidence, the out-of-sample probability of the label they carry.

The probabilities come from k-fold cross-validation (each sample predicted by a model fit
without it); with in-sample probabilities a model that memorised a wrong label would
vouch for it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict

FOLDS = 5
# A class with fewer labels than this is not judged (its samples are left out): k-fold
# needs one of each class per fold, and thresholds from a handful of samples mean little.
MIN_LABELS_PER_CLASS = FOLDS


@dataclass(frozen=True)
class Flagged:
    """Samples judged probably mislabeled, most suspicious first (positions into the input)."""

    index: np.ndarray  # positions into y / probs
    score: np.ndarray  # 1 - self-confidence, in [0, 1]: higher is more suspicious
    likely: np.ndarray  # the most probable other class, as a class index


def judgeable(y: np.ndarray, *, min_per_class: int = MIN_LABELS_PER_CLASS) -> np.ndarray:
    """Return a boolean mask of the samples whose class has at least ``min_per_class`` labels."""
    values, counts = np.unique(y, return_counts=True)
    enough = set(values[counts >= min_per_class].tolist())
    return np.fromiter((v in enough for v in y.tolist()), dtype=bool, count=len(y))


def out_of_sample_probabilities(estimator, X, y: np.ndarray, *, folds: int = FOLDS,
                                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (classes, probabilities): each row predicted by a model fit on the other folds.

    ``y`` must hold at least ``folds`` samples of every class (``judgeable``). Columns follow
    ``classes`` (sorted).
    """
    classes = np.unique(y)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(clone(estimator), X, y, cv=cv, method="predict_proba")
    return classes, np.asarray(probs, dtype=np.float64)


def probably_wrong(y_index: np.ndarray, probs: np.ndarray) -> Flagged:
    """Confident learning on class indices ``y_index`` (0..k-1) and out-of-sample ``probs``."""
    from cleanlab.filter import find_label_issues  # imported on use: only workers judge

    n, k = probs.shape
    if n == 0 or k < 2:
        return Flagged(np.zeros(0, int), np.zeros(0), np.zeros(0, int))
    # n_jobs=1: Celery's pool processes are daemonic and may not start a multiprocessing pool.
    index = np.asarray(find_label_issues(
        labels=y_index, pred_probs=probs, filter_by="prune_by_noise_rate",
        return_indices_ranked_by="self_confidence", n_jobs=1,
    ), dtype=int)
    self_confidence = probs[index, y_index[index]]
    others = probs[index].copy()
    others[np.arange(len(index)), y_index[index]] = -1.0
    return Flagged(index=index, score=1.0 - self_confidence, likely=others.argmax(axis=1))


def disagreement(values: Sequence[str], current: str) -> tuple[float, str] | None:
    """Score the current labels ``values`` of one sample: 1 - the majority's share, and the
    majority's label (another value than ``current`` on a tie); None when they agree."""
    counts = Counter(values)
    if len(counts) < 2:
        return None
    top = max(counts.values())
    leaders = sorted(value for value, count in counts.items() if count == top)
    likely = next((value for value in leaders if value != current), leaders[0])
    return 1.0 - top / len(values), likely
