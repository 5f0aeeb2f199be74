"""Query strategies that pick which samples to label next; the only module importing modAL."""
from __future__ import annotations

import numpy as np
from modAL.uncertainty import (
    classifier_entropy,
    classifier_margin,
    classifier_uncertainty,
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)
from sklearn.base import ClassifierMixin

STRATEGIES = ("least_confident", "margin", "entropy", "random")


class UnknownStrategy(ValueError):
    """The project names a strategy we do not have."""


def uncertainty_scores(
    estimator: ClassifierMixin, X: np.ndarray, *, strategy: str, seed: int = 0
) -> np.ndarray:
    """Return one score per row of ``X``; a higher score means "ask about this one first"."""
    if strategy == "least_confident":
        return np.asarray(classifier_uncertainty(estimator, X), dtype=np.float64)
    if strategy == "margin":
        # modAL's margin is p1 - p2 (small = uncertain); flip it so that higher = ask first.
        return 1.0 - np.asarray(classifier_margin(estimator, X), dtype=np.float64)
    if strategy == "entropy":
        return np.asarray(classifier_entropy(estimator, X), dtype=np.float64)
    if strategy == "random":
        return np.random.default_rng(seed).random(len(X))
    raise UnknownStrategy(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")


def select_uncertain(
    estimator: ClassifierMixin, X: np.ndarray, *, n: int, strategy: str, seed: int = 0
) -> np.ndarray:
    """Return the row indices of the ``n`` rows to label next, most informative first."""
    n = min(n, len(X))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    samplers = {
        "least_confident": uncertainty_sampling,
        "margin": margin_sampling,
        "entropy": entropy_sampling,
    }
    if strategy == "random":
        return np.random.default_rng(seed).permutation(len(X))[:n]
    if strategy not in samplers:
        raise UnknownStrategy(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    indices, _values = samplers[strategy](estimator, X, n_instances=n)
    indices = np.asarray(indices, dtype=np.int64)
    # modAL returns the top n unordered (argpartition); order them most informative first.
    scores = uncertainty_scores(estimator, X[indices], strategy=strategy)
    return indices[np.argsort(-scores, kind="stable")]
