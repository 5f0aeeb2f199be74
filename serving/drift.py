"""Input drift statistics, pure: one feature's reference against a window's values, and the
dataset verdict. No Django.

The test of each feature is Evidently's default, chosen by the reference's size:

================================  =====================================  ===========================
feature                           reference ≤ 1,000 values               reference > 1,000 values
================================  =====================================  ===========================
numeric (> 5 distinct values)     two-sample K-S, drift when p < 0.05    Wasserstein distance / the
                                                                         reference's std, drift
                                                                         when ≥ 0.1
categorical, or numeric with      chi-square, drift when p < 0.05        Jensen-Shannon distance
≤ 5 distinct values                                                      (natural log), drift when
                                                                         ≥ 0.1
================================  =====================================  ===========================

Distinct values are counted over reference and window together, as Evidently does. The
chi-square is the two-sample test of homogeneity (``chi2_contingency`` without continuity
correction): for two categories it is exactly Evidently's two-proportion z-test, and unlike
a goodness-of-fit test against the reference's shares it allows for the reference being a
sample too, so it keeps its 5% false-alarm rate when the window is as large as the
reference. The dataset drifts when at least half of its features drift (Evidently's
``drift_share`` 0.5).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.spatial import distance
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

SMALL_REFERENCE = 1000  # at most this many reference values: a test with a p-value
FEW_VALUES = 5  # a numeric feature with at most this many distinct values counts as categorical
P_THRESHOLD = 0.05
DISTANCE_THRESHOLD = 0.1
DRIFT_SHARE = 0.5

KS = "K-S p-value"
CHI_SQUARE = "chi-square p-value"
WASSERSTEIN = "Wasserstein distance (normed)"
JENSEN_SHANNON = "Jensen-Shannon distance"
P_VALUE_METHODS = (KS, CHI_SQUARE)


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{float(value):.{digits}g}")


def _result(name: str, method: str, score: float) -> dict:
    if not np.isfinite(score):  # e.g. a p-value of two identical constants
        score = 1.0 if method in P_VALUE_METHODS else 0.0
    if method in P_VALUE_METHODS:
        threshold, drifted = P_THRESHOLD, score < P_THRESHOLD
    else:
        threshold, drifted = DISTANCE_THRESHOLD, score >= DISTANCE_THRESHOLD
    return {"name": name, "method": method, "score": _significant(score),
            "threshold": threshold, "drifted": bool(drifted)}


def categorical_drift(name: str, reference: Mapping[str, int], current: Mapping[str, int]) -> dict:
    """Drift of a categorical feature from value counts (value -> count, both non-empty)."""
    keys = sorted(set(reference) | set(current), key=str)
    ref = np.array([reference.get(k, 0) for k in keys], dtype=np.float64)
    cur = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    if ref.sum() <= SMALL_REFERENCE:
        if len(keys) < 2:
            return _result(name, CHI_SQUARE, 1.0)  # one value on both sides: nothing moved
        p_value = chi2_contingency(np.vstack([ref, cur]), correction=False).pvalue
        return _result(name, CHI_SQUARE, p_value)
    # Evidently's binning: shares, a value absent from one side given a small share.
    ref_share, cur_share = ref / ref.sum(), cur / cur.sum()
    ref_share[ref_share == 0] = 1e-4
    cur_share[cur_share == 0] = 1e-4
    return _result(name, JENSEN_SHANNON, distance.jensenshannon(ref_share, cur_share))


def numeric_drift(name: str, reference: Sequence[float], current: Sequence[float]) -> dict:
    """Drift of a numeric feature from its values (missing ones left out, both non-empty)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    distinct = np.unique(np.concatenate([ref, cur]))
    if len(distinct) <= FEW_VALUES:
        return categorical_drift(name, value_counts(ref), value_counts(cur))
    if len(ref) <= SMALL_REFERENCE:
        return _result(name, KS, ks_2samp(ref, cur).pvalue)
    norm = max(float(np.std(ref)), 0.001)
    return _result(name, WASSERSTEIN, wasserstein_distance(ref, cur) / norm)


def value_counts(values: Iterable) -> dict[str, int]:
    """Count values as the strings they read as (``1.0`` and ``1`` apart, as stored)."""
    return dict(Counter(repr(float(v)) if isinstance(v, float) else str(v) for v in values))


def dataset_drift(features: list[dict]) -> tuple[bool, float]:
    """Return (drifted, share of drifted features): drifted when the share is ≥ 0.5."""
    if not features:
        return False, 0.0
    share = sum(f["drifted"] for f in features) / len(features)
    return share >= DRIFT_SHARE, round(share, 4)
