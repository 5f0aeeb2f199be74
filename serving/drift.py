"""Input drift statistics, pure: one feature's reference against a window's values, and the
dataset verdict. No Django.

The test of each feature is Evidently's default for its type and sample size:

- numeric with more than 5 distinct values (reference and window together): the two-sample
  Kolmogorov-Smirnov test, drift when p < 0.05; with large samples, the Wasserstein
  distance divided by the reference's standard deviation, drift when ≥ 0.1;
- categorical, or numeric with at most 5 distinct values: chi-square, drift when p < 0.05;
  with large samples, the Jensen-Shannon distance (natural log), drift when ≥ 0.1.

"Large" is more than 1,000 values. Evidently looks at the reference alone; here both the
reference and the window must be that large. A distance of a small window from a large
reference is mostly sampling noise: 100 inputs drawn from the reference's own law are a
normed Wasserstein distance of 0.1 or more away from 5,000 reference values seven times in
ten, so every quiet hour would read as drifted. A test's p-value allows for the window's
size; the distances are kept for the case they are meant for, two large samples, where
any p-value test flags differences too small to matter.

The chi-square is the two-sample test of homogeneity (``chi2_contingency`` without
continuity correction): for two categories it is exactly Evidently's two-proportion
z-test, and unlike a goodness-of-fit test against the reference's shares it allows for the
reference being a sample too, so it keeps its 5% false-alarm rate when the window is as
large as the reference. The dataset drifts when at least half of its features drift
(Evidently's ``drift_share`` 0.5).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.spatial import distance
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

SMALL_SAMPLE = 1000  # reference or window at most this large: a test with a p-value
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
    if min(ref.sum(), cur.sum()) <= SMALL_SAMPLE:
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
    if min(len(ref), len(cur)) <= SMALL_SAMPLE:
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
