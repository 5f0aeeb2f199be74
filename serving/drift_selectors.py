"""Input drift over a monitoring window: the production inputs a model version served in the
window, against the reference kept with the version when it was trained
(``learning.services.drift_reference``), feature by feature with ``serving.drift``.

The window's inputs are the instances kept on the version's newest prediction-log rows in
the window (at most ``WINDOW_ROWS`` of the kind, found among ``SCAN_FACTOR`` times as many
rows, so a log that kept no instances costs one bounded index scan): tabular ones by
column, text and images featurized as the version's model does (its fitted TF-IDF;
pixels) and projected on the reference's principal components, beside the confidence
logged with each. An instance that cannot be read is left out; with fewer than
``MIN_ROWS`` usable ones the window has not enough data. The result is kept per (project,
version, window) and refreshed in the background (``input_drift``): it reads thousands of
rows, and the page refreshes every 30 s.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping

import numpy as np
import orjson
from django import db
from django.conf import settings
from django.core.cache import cache
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone
from sklearn.pipeline import Pipeline

from annotation.models import Project
from core.errors import DomainError
from learning.artifacts import ArtifactError
from learning.models import DriftReference, ModelVersion
from learning.services.drift_reference import CONFIDENCE, Reference, drift_reference_load
from serving import drift, model_cache
from serving.instances import instances_featurize
from serving.models import PredictionLog

logger = logging.getLogger(__name__)

# Inputs compared per window: raw columns are cheap; featurizing a text costs 0.2-5 ms.
WINDOW_ROWS = {Project.Kind.TABULAR: 5000, Project.Kind.TEXT: 1000, Project.Kind.IMAGE: 2000}
SCAN_FACTOR = 4  # log rows read per input wanted, for logs that kept few instances
MIN_ROWS = 30
KEEP_STALE_FACTOR = 10  # a stale result is shown (while refreshed) up to 10 x the cache time
_BY_SIZE = "tests by sample size (Evidently's defaults)"
_VERDICT = f"dataset drift when ≥ {drift.DRIFT_SHARE:.0%} of features drift"


def window_inputs(*, version_id: int, project_id: int, start: dt.datetime, end: dt.datetime,
                  limit: int) -> list[tuple[object, float | None]]:
    """(instance, confidence) of the version's newest predictions in ``(start, end]`` that
    kept their instance: at most ``limit``, among the newest ``SCAN_FACTOR × limit``."""
    rows = (PredictionLog.objects
            .filter(project_id=project_id, created_at__gt=start, created_at__lte=end,
                    model_version_id=version_id)
            .order_by("-created_at")
            .values_list(Cast("instance", TextField()), "confidence")[:SCAN_FACTOR * limit])
    kept = []
    for text, confidence in rows.iterator(chunk_size=2000):
        if text is None:
            continue
        try:
            instance = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if instance is not None:
            kept.append((instance, confidence))
            if len(kept) >= limit:
                break
    return kept


def _number(value: object) -> float | None:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _category(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _tabular(reference: Reference, instances: list) -> tuple[dict[str, list | Counter], int]:
    """Each reference column's usable values in the window, and how many rows had one."""
    current: dict[str, list | Counter] = {}
    used = np.zeros(len(instances), dtype=bool)
    for feature in reference.features:
        name, numeric = feature["name"], "values" in feature
        values: list = []
        for i, row in enumerate(instances):
            value = row.get(name) if isinstance(row, Mapping) else None
            if value is None or isinstance(value, (dict, list)):
                continue
            value = _number(value) if numeric else _category(value)
            if value is not None:
                values.append(value)
                used[i] = True
        current[name] = values if numeric else Counter(values)
    return current, int(used.sum())


def _featurized(project: Project, version: ModelVersion,
                instances: list) -> tuple[object, list[int]]:
    """The featurized rows of the instances that can be read, and their indexes."""
    if project.kind == Project.Kind.TEXT:
        good = [i for i, inst in enumerate(instances)
                if isinstance(inst, Mapping) and isinstance(inst.get("text"), str)]
        model = model_cache.version_model(project_id=project.pk, number=version.number).estimator
        if not (isinstance(model, Pipeline) and model.steps[0][0] == "features"):
            raise ValueError("the version's model has no text featurizer")
        return model.steps[0][1].transform([instances[i]["text"] for i in good]), good
    try:
        return np.asarray(instances_featurize(project=project, instances=instances)), list(
            range(len(instances)))
    except (DomainError, ValueError, TypeError):  # some are unreadable: one by one
        rows, good = [], []
        for i, inst in enumerate(instances):
            try:
                rows.append(np.asarray(instances_featurize(project=project, instances=[inst]))[0])
            except (DomainError, ValueError, TypeError):
                continue
            good.append(i)
        return np.vstack(rows) if rows else np.empty((0, 0)), good


def _components(project: Project, version: ModelVersion, reference: Reference,
                inputs: list) -> tuple[dict[str, list], int]:
    Z, good = _featurized(project, version, [inst for inst, _c in inputs])
    current: dict[str, list] = {}
    if good and Z.shape[1] != reference.width:
        raise DomainError(f"the inputs now make {Z.shape[1]} features, the reference has "
                          f"{reference.width} (was the image size changed?)")
    if good:
        Z = Z[:, reference.columns]
        Z = Z.toarray() if hasattr(Z, "toarray") else Z
        projected = (Z - reference.mean) @ reference.components.T
        names = [f["name"] for f in reference.features if f["name"] != CONFIDENCE]
        current = {name: projected[:, j].tolist() for j, name in enumerate(names)}
    current[CONFIDENCE] = [c for i in good if (c := inputs[i][1]) is not None]
    return current, len(good)


def _compared(reference: Reference, current: dict) -> list[dict]:
    out = []
    for feature in reference.features:
        values = current.get(feature["name"])
        if not values:  # absent from every window row: nothing to compare
            continue
        if "counts" in feature:
            out.append(drift.categorical_drift(feature["name"], feature["counts"], values))
        elif feature["values"]:
            out.append(drift.numeric_drift(feature["name"], feature["values"], values))
    return out


def _method(project: Project) -> str:
    if project.kind == Project.Kind.TABULAR:
        return f"per column, {_BY_SIZE}; {_VERDICT}"
    what = "TF-IDF features" if project.kind == Project.Kind.TEXT else "pixels"
    return f"per principal component of the {what}, and confidence, {_BY_SIZE}; {_VERDICT}"


def _input_drift(project: Project, version: ModelVersion, start: dt.datetime,
                 end: dt.datetime) -> tuple[dict | None, str | None]:
    if version.status != ModelVersion.Status.READY:
        return None, f"v{version.number} is {version.status}: no model to compare with"
    reference = drift_reference_load(version_id=version.pk)
    if reference is None:
        return None, (f"no reference for v{version.number}: it was trained before drift "
                      "references were kept (manage.py drift_reference builds one)")
    inputs = window_inputs(version_id=version.pk, project_id=project.pk, start=start, end=end,
                           limit=WINDOW_ROWS.get(project.kind, 2000))
    if len(inputs) < MIN_ROWS:
        return None, (f"not enough data: {len(inputs)} kept inputs of v{version.number} in "
                      f"the window, {MIN_ROWS} needed")
    if reference.kind == DriftReference.Kind.COLUMNS:
        current, n = _tabular(reference, [inst for inst, _c in inputs])
    else:
        current, n = _components(project, version, reference, inputs)
    if n < MIN_ROWS:
        return None, f"not enough data: {n} readable inputs in the window, {MIN_ROWS} needed"
    features = _compared(reference, current)
    drifted, share = drift.dataset_drift(features)
    return {"drifted": drifted, "share": share, "n": n, "reference_n": reference.rows,
            "method": _method(project), "features": features}, None


def _computed(project: Project, version: ModelVersion, start: dt.datetime,
              end: dt.datetime) -> tuple[dict | None, str | None]:
    try:
        return _input_drift(project, version, start, end)
    except DomainError as exc:  # the version's model cannot be loaded
        return None, f"drift not computed: {exc}"
    except ArtifactError as exc:
        logger.error("refusing the drift reference of %s v%s: %s", project.slug,
                     version.number, exc)
        return None, f"drift not computed: the reference of v{version.number} is refused ({exc})"
    except Exception:  # the rest of the page must not fail with it
        logger.exception("input drift of %s v%s failed", project.slug, version.number)
        return None, "drift not computed: an unexpected error (logged on the server)"


def _refresh(key: str, project: Project, version: ModelVersion, span: dt.timedelta,
             seconds: int) -> None:
    """Compute the drift of the window ending now and keep it (a background thread's work)."""
    try:
        end = timezone.now()
        cache.set(key, (time.time(), _computed(project, version, end - span, end)),
                  seconds * KEEP_STALE_FACTOR)
    finally:
        cache.delete(f"{key}:refreshing")
        if threading.current_thread() is not threading.main_thread():
            db.connections.close_all()  # this thread's own connections


def _refresh_later(*args) -> None:
    threading.Thread(target=_refresh, args=args, daemon=True, name="drift-refresh").start()


def input_drift(*, project: Project, version: ModelVersion | None, window: str,
                start: dt.datetime, end: dt.datetime) -> tuple[dict | None, str | None]:
    """(drift, None) of ``version``'s inputs in the window, or (None, why there is none).

    Computed on the first read, then kept: fresh for ``MONITORING_DRIFT_CACHE_SECONDS``;
    after that the kept result is answered at once while a background thread of this
    process computes the next (one at a time per key), so a page view never waits for it
    again until the key goes unread for ten times that long. Never raises for bad data: an
    unreadable instance is left out, a model that cannot be loaded is named in the reason.
    """
    if version is None:
        return None, "no model version to compare with"
    seconds = settings.MONITORING_DRIFT_CACHE_SECONDS
    if seconds <= 0:
        return _computed(project, version, start, end)
    key = f"monitoring-drift:{project.pk}:{version.pk}:{window}"
    kept = cache.get(key)
    if kept is not None:
        computed_at, result = kept
        if time.time() - computed_at >= seconds and cache.add(f"{key}:refreshing", 1, seconds):
            _refresh_later(key, project, version, end - start, seconds)
        return result
    result = _computed(project, version, start, end)
    cache.set(key, (time.time(), result), seconds * KEEP_STALE_FACTOR)
    return result
