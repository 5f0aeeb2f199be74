"""The models each process serves: loaded once, sha-checked, swapped soon after a promotion.

Two caches live here, both per process:

- the *served* model of each project. Which version is served is looked up at most once
  per ``SERVING_MODEL_CHECK_SECONDS`` (default 0.5 s) per project, so a promotion made by
  any process is picked up within that interval plus the load time, without a restart,
  and a request normally costs a dict lookup instead of a query. A promotion made through
  :func:`invalidate` (the promote API) is seen at once by the promoting process.
- a small LRU of *pinned* versions (``?version=N``), keyed by (project, number). Only ``ready``
  versions are cached, and a ready version's artifact never changes, so a hit needs no
  query at all.

An artifact whose sha256 does not match the database is never loaded: the previous served
model keeps serving, the refusal is logged and written to the version's ``error``, and the
load is not retried for ``REFUSED_RETRY_SECONDS``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from scipy.special import expit
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import DomainError
from learning import artifacts, compiled_features
from learning.models import ModelVersion
# Raised here; callers name them as model_cache.UnknownVersion etc. Export raises the same.
from learning.version_errors import ArtifactRefused, UnknownVersion, VersionNotReady
from serving.instances import cell_refused

logger = logging.getLogger(__name__)

REFUSED_RETRY_SECONDS = 30.0
MAX_VERSION_NUMBER = 2**31 - 1  # PositiveIntegerField's range on every backend
_ROW_FIELDS = ("id", "number", "status", "artifact_path", "artifact_sha256")


class NoServedModel(DomainError):
    code = "no_model"
    status = 409


@dataclass(frozen=True)
class LoadedModel:
    """A served model. ``predict_proba`` takes what ``serving.instances`` makes of a request
    (pixel rows, texts, column -> value rows) and is the leanest equal path to the
    artifact's own: the featurizer compiled (``learning.compiled_features``), then the
    estimator's numpy twin (``fast_predict_proba``)."""

    version_id: int
    number: int
    estimator: ClassifierMixin
    predict_proba: Callable[[object], np.ndarray] = field(init=False, repr=False,
                                                          compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "predict_proba", lean_predict_proba(self.estimator))


def lean_predict_proba(estimator) -> Callable[[object], np.ndarray]:
    """Return the artifact's ``predict_proba`` with its featurizer compiled, when it can be.

    A value the compiled featurizer refuses (a numeric column's ``"abc"``, NaN, infinity)
    becomes ``InvalidInstance`` (400) naming the instance and column; the featurizer
    itself would have raised a 500 for infinities and silently read the rest as missing.
    """
    featurizer, rest = compiled_features.split_featurizer(estimator)
    if featurizer is None:
        return fast_predict_proba(estimator)
    lean = compiled_features.compile_featurizer(featurizer)
    if lean is None:
        return estimator.predict_proba
    rest_proba = fast_predict_proba(rest)

    def proba(X) -> np.ndarray:
        try:
            features = lean(X, strict=True)
        except compiled_features.CellError as exc:
            raise cell_refused(exc) from None
        return rest_proba(features)

    return proba


def _linear_steps(estimator) -> tuple[list[StandardScaler], LogisticRegression] | None:
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("clf", estimator)]
    *transforms, (_name, final) = steps
    if type(final) is not LogisticRegression:
        return None
    scalers = []
    for _name, step in transforms:
        if step is None or step == "passthrough":
            continue
        if type(step) is not StandardScaler:
            return None
        scalers.append(step)
    return scalers, final


def fast_predict_proba(estimator) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``estimator.predict_proba``, or plain numpy doing the same for linear models.

    For a (scaled) LogisticRegression, scikit-learn's per-call input validation costs more
    than the arithmetic on a small batch (about 150 µs of a 200 µs call for one row). The
    numpy version is only used after it reproduced the estimator's own probabilities on a
    probe batch; any other estimator keeps its ``predict_proba``. With a scaler and float32
    input the two agree to float32 precision (about 1e-7), not bit for bit. Input must be
    a finite float matrix of the right width, which the featurizers guarantee.
    """
    parts = _linear_steps(estimator)
    if parts is None:
        return estimator.predict_proba
    scalers, clf = parts
    coef_t = np.ascontiguousarray(clf.coef_.T)
    intercept = clf.intercept_
    binary = len(clf.classes_) <= 2

    def proba(X: np.ndarray) -> np.ndarray:
        if sp.issparse(X):  # TF-IDF rows: the product only touches their nonzeros
            if scalers:
                return estimator.predict_proba(X)
            return _probabilities(np.asarray(X @ coef_t) + intercept, binary)
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        for scaler in scalers:  # in the input's precision, as StandardScaler.transform does
            X = X.copy()
            if scaler.mean_ is not None:
                X -= scaler.mean_
            if scaler.scale_ is not None:
                X /= scaler.scale_
        return _probabilities(X @ coef_t + intercept, binary)

    probe = np.random.default_rng(0).random((16, clf.coef_.shape[1]))
    try:
        if np.allclose(proba(probe), estimator.predict_proba(probe), rtol=1e-9, atol=1e-12) and (
                scalers or np.allclose(proba(sp.csr_matrix(probe)), estimator.predict_proba(probe),
                                       rtol=1e-9, atol=1e-12)):
            return proba
    except (ValueError, TypeError, AttributeError):
        pass
    logger.info("fast path does not reproduce %s; using its predict_proba", type(estimator))
    return estimator.predict_proba


def _probabilities(decision: np.ndarray, binary: bool) -> np.ndarray:
    """LogisticRegression's probabilities from its decision values."""
    if binary:
        positive = expit(decision[:, 0])
        return np.column_stack([1.0 - positive, positive])
    decision -= decision.max(axis=1, keepdims=True)
    np.exp(decision, out=decision)
    decision /= decision.sum(axis=1, keepdims=True)
    return decision


@dataclass
class _Check:
    checked_at: float
    version_id: int | None


_lock = threading.Lock()
_served: dict[int, LoadedModel] = {}  # project id -> model being served
_checks: dict[int, _Check] = {}  # project id -> last served-version lookup
_pinned: OrderedDict[tuple[int, int], LoadedModel] = OrderedDict()  # (project, number), LRU
_refused: dict[tuple[int, str], float] = {}  # (version id, sha256) -> when refused


def _check_seconds() -> float:
    return float(getattr(settings, "SERVING_MODEL_CHECK_SECONDS", 0.5))


def _served_row(project_id: int) -> dict | None:
    return (
        ModelVersion.objects.filter(project_id=project_id, is_served=True)
        .values(*_ROW_FIELDS)
        .first()
    )


def _load(row: dict) -> ClassifierMixin:
    """Load a version's artifact, sha-checked; record and raise ``ArtifactRefused`` if bad."""
    key = (row["id"], row["artifact_sha256"])
    refused_at = _refused.get(key)
    if refused_at is not None and time.monotonic() - refused_at < REFUSED_RETRY_SECONDS:
        raise ArtifactRefused(
            f"model version {row['number']}'s artifact failed its integrity check"
        )
    try:
        estimator = artifacts.load(path=row["artifact_path"], sha256=row["artifact_sha256"])
    except artifacts.ArtifactError as exc:
        logger.error("refusing artifact of model version %s: %s", row["id"], exc)
        _refused[key] = time.monotonic()
        ModelVersion.objects.filter(pk=row["id"]).update(error=f"serving refused artifact: {exc}")
        raise ArtifactRefused(
            f"model version {row['number']}'s artifact failed its integrity check"
        ) from exc
    _refused.pop(key, None)
    return estimator


def served_model(*, project_id: int) -> LoadedModel:
    """Return the project's served model, loading it only when the served version changed.

    The served version is looked up at most once per ``SERVING_MODEL_CHECK_SECONDS``. If a
    newly served artifact fails its hash check, the previously loaded model keeps serving.
    """
    now = time.monotonic()
    current = _served.get(project_id)
    check = _checks.get(project_id)
    if check is not None and now - check.checked_at < _check_seconds():
        if current is not None:
            return current
        if check.version_id is None:
            raise NoServedModel("this project has no served model yet; label a batch first")
        raise NoServedModel("the served model's artifact failed its integrity check")
    row = _served_row(project_id)
    if row is None:
        _checks[project_id] = _Check(checked_at=now, version_id=None)
        if current is not None:
            return current
        raise NoServedModel("this project has no served model yet; label a batch first")
    if current is not None and current.version_id == row["id"]:
        _checks[project_id] = _Check(checked_at=now, version_id=row["id"])
        return current
    # The check is recorded only once the model is loaded (or refused): a request arriving
    # while another thread loads it must wait for that load, not take "no model" for it.
    with _lock:
        current = _served.get(project_id)
        if current is not None and current.version_id == row["id"]:
            _checks[project_id] = _Check(checked_at=now, version_id=row["id"])
            return current
        pinned = _pinned.get((project_id, row["number"]))
        try:
            loaded = pinned if pinned is not None and pinned.version_id == row["id"] else (
                LoadedModel(version_id=row["id"], number=row["number"], estimator=_load(row))
            )
        except ArtifactRefused:
            _checks[project_id] = _Check(checked_at=now, version_id=row["id"])
            if current is not None:
                return current
            raise NoServedModel("the served model's artifact failed its integrity check")
        _served[project_id] = loaded
        _checks[project_id] = _Check(checked_at=now, version_id=row["id"])
        return loaded


def version_model(*, project_id: int, number: int) -> LoadedModel:
    """Return version ``number`` of the project, loading and sha-checking it on first use.

    Raise ``UnknownVersion`` (404) when there is no such version, ``VersionNotReady`` (409)
    when it has no usable model, and ``ArtifactRefused`` (409) when its artifact is bad.
    """
    served = _served.get(project_id)
    if served is not None and served.number == number:
        return served
    key = (project_id, number)
    pinned = _pinned.get(key)
    if pinned is not None:
        with _lock:
            if key in _pinned:
                _pinned.move_to_end(key)
        return pinned
    row = None
    if 0 < number <= MAX_VERSION_NUMBER:
        row = (
            ModelVersion.objects.filter(project_id=project_id, number=number)
            .values(*_ROW_FIELDS)
            .first()
        )
    if row is None:
        raise UnknownVersion(f"this project has no model version {number}", detail={"version": number})
    if row["status"] != ModelVersion.Status.READY:
        raise VersionNotReady(
            f"model version {number} is {row['status']}, not ready",
            detail={"version": number, "status": row["status"]},
        )
    with _lock:
        pinned = _pinned.get(key)
        if pinned is None or pinned.version_id != row["id"]:
            pinned = LoadedModel(version_id=row["id"], number=number, estimator=_load(row))
            _pinned[key] = pinned
            while len(_pinned) > int(getattr(settings, "SERVING_PINNED_MODELS", 4)):
                _pinned.popitem(last=False)
        _pinned.move_to_end(key)
        return pinned


def invalidate(project_id: int) -> None:
    """Make the next request of this process look up the project's served version again."""
    _checks.pop(project_id, None)


def clear() -> None:
    """Forget every loaded model and lookup (tests)."""
    with _lock:
        _served.clear()
        _checks.clear()
        _pinned.clear()
        _refused.clear()
