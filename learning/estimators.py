"""Registry of scikit-learn classifiers a project can train; no Django imports."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def _logreg(C: float = 1.0, max_iter: int = 1000) -> ClassifierMixin:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=C, max_iter=max_iter)),
        ]
    )


ESTIMATORS: dict[str, Callable[..., ClassifierMixin]] = {
    "logreg": _logreg,
}
DEFAULT_ESTIMATOR = "logreg"


class UnknownEstimator(ValueError):
    """The model spec names an estimator we do not have."""


def build_estimator(spec: dict[str, Any] | None) -> ClassifierMixin:
    """Return an unfitted classifier for a model spec ``{"estimator": name, "params": {...}}``."""
    spec = spec or {}
    name = spec.get("estimator", DEFAULT_ESTIMATOR)
    try:
        factory = ESTIMATORS[name]
    except KeyError:
        raise UnknownEstimator(f"unknown estimator {name!r}; choose from {sorted(ESTIMATORS)}")
    return factory(**spec.get("params", {}))
