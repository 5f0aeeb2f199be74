"""Registry of scikit-learn classifiers a project can train; no Django imports."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


class CalibratedLinearSVC(ClassifierMixin, BaseEstimator):
    """Linear SVM with calibrated probabilities that still fits on a handful of labels.

    Sigmoid calibration by cross-validation needs at least two labels of every class in
    every fold, so the number of folds shrinks to the rarest class's count; with a single
    label in some class the decision values go through a softmax instead.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularization strength of the SVM.
    cv : int, default=3
        Most cross-validation folds used for calibration.
    max_iter : int, default=5000
        Iteration cap of the liblinear solver.
    random_state : int, default=0
        Seed of the solver and of the calibration folds.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in fit.
    model_ : CalibratedClassifierCV or LinearSVC
        The fitted model; a bare LinearSVC when calibration was not possible.
    calibration_ : str
        ``"sigmoid-cv<k>"`` or ``"softmax"``: how probabilities are produced.
    n_iter_ : int
        Most solver iterations any of the fitted SVMs ran.
    """

    def __init__(self, C=1.0, cv=3, max_iter=5000, random_state=0):
        self.C = C
        self.cv = cv
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y):
        """Fit the SVM and its calibration on ``X``, ``y``; return self."""
        X, y = validate_data(self, X, y, accept_sparse="csr")
        check_classification_targets(y)
        self.classes_, counts = np.unique(y, return_counts=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"CalibratedLinearSVC needs samples of at least 2 classes; got one class: "
                f"{self.classes_[0]!r}"
            )
        svc = LinearSVC(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        folds = int(min(self.cv, counts.min()))
        if folds >= 2:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
            self.model_ = CalibratedClassifierCV(svc, method="sigmoid", cv=splitter).fit(X, y)
            self.calibration_ = f"sigmoid-cv{folds}"
            svms = [c.estimator for c in self.model_.calibrated_classifiers_]
        else:
            self.model_ = svc.fit(X, y)
            self.calibration_ = "softmax"
            svms = [self.model_]
        self.n_iter_ = max(int(np.max(m.n_iter_)) for m in svms)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def predict_proba(self, X):
        """Return class probabilities, one column per entry of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        if self.calibration_ != "softmax":
            return self.model_.predict_proba(X)
        decision = self.model_.decision_function(X)
        if decision.ndim == 1:
            positive = expit(decision)
            return np.column_stack([1.0 - positive, positive])
        return softmax(decision, axis=1)

    def predict(self, X):
        """Return the most probable class of each row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _scaled(clf: ClassifierMixin, scale: bool) -> Pipeline:
    steps = [("scale", StandardScaler())] if scale else []
    return Pipeline([*steps, ("clf", clf)])


def _logreg(C: float = 1.0, max_iter: int = 1000, scale: bool = True, solver: str = "lbfgs"
            ) -> ClassifierMixin:
    return _scaled(LogisticRegression(C=C, max_iter=max_iter, solver=solver), scale)


def _linear_svm(C: float = 1.0, cv: int = 3, scale: bool = True, random_state: int = 0
                ) -> ClassifierMixin:
    return _scaled(CalibratedLinearSVC(C=C, cv=cv, random_state=random_state), scale)


def _random_forest(n_estimators: int = 200, max_features: str | float = "sqrt",
                   min_samples_leaf: int = 1, random_state: int = 0, n_jobs: int | None = None
                   ) -> ClassifierMixin:
    return Pipeline([("clf", RandomForestClassifier(
        n_estimators=n_estimators, max_features=max_features, min_samples_leaf=min_samples_leaf,
        random_state=random_state, n_jobs=n_jobs,
    ))])


def _hist_gb(learning_rate: float = 0.1, max_iter: int = 100, min_samples_leaf: int = 5,
             random_state: int = 0) -> ClassifierMixin:
    # The default min_samples_leaf=20 leaves a tree with a few dozen labels a single leaf, i.e.
    # a constant model; 5 lets early active-learning rounds learn something.
    return Pipeline([("clf", HistGradientBoostingClassifier(
        learning_rate=learning_rate, max_iter=max_iter, min_samples_leaf=min_samples_leaf,
        random_state=random_state,
    ))])


ESTIMATORS: dict[str, Callable[..., ClassifierMixin]] = {
    "logreg": _logreg,
    "linear_svm": _linear_svm,
    "random_forest": _random_forest,
    "hist_gb": _hist_gb,
}
DEFAULT_ESTIMATOR = "logreg"
DEFAULT_ESTIMATOR_BY_KIND: dict[str, str] = {"image": "logreg", "text": "logreg", "tabular": "logreg"}
# Pixels already share one scale in [0, 1]; standardizing them amplifies noise in nearly
# constant border pixels (measured on MNIST: 0.66 vs 0.62 accuracy at 50 labels).
# TF-IDF rows are sparse and L2-normalised, so centring would densify them; on ~15k sparse
# columns newton-cg converges in ~5 iterations where lbfgs takes 30-50 (5x faster fits).
DEFAULT_PARAMS_BY_KIND: dict[tuple[str, str], dict[str, Any]] = {
    ("image", "logreg"): {"scale": False},
    ("image", "linear_svm"): {"scale": False},
    ("text", "logreg"): {"scale": False, "solver": "newton-cg"},
    ("text", "linear_svm"): {"scale": False},
}


class UnknownEstimator(ValueError):
    """The model spec names an estimator we do not have."""


def build_estimator(spec: dict[str, Any] | None, *, kind: str = "") -> ClassifierMixin:
    """Return an unfitted classifier for a model spec ``{"estimator": name, "params": {...}}``.

    Without an estimator name, the default for the data ``kind`` is used; the estimator gets
    the defaults for ``kind``, which the spec's params override.
    """
    spec = spec or {}
    name = spec.get("estimator") or DEFAULT_ESTIMATOR_BY_KIND.get(kind, DEFAULT_ESTIMATOR)
    try:
        factory = ESTIMATORS[name]
    except KeyError:
        raise UnknownEstimator(f"unknown estimator {name!r}; choose from {sorted(ESTIMATORS)}")
    params = dict(DEFAULT_PARAMS_BY_KIND.get((kind, name), {}))
    params.update(spec.get("params", {}))
    try:
        return factory(**params)
    except TypeError as exc:
        raise UnknownEstimator(f"bad params for {name!r}: {exc}") from exc
