"""Request, train, evaluate, promote model versions and rescore the pool."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time

import numpy as np
import sklearn
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from annotation.models import Project, Sample
from annotation.selectors import label_count_current, labeled_samples, unlabeled_pool_samples
from annotation.services import sample_scores_write
from learning import artifacts, strategies
from learning.estimators import DEFAULT_ESTIMATOR, build_estimator
from learning.models import ModelVersion
from learning.selectors import model_version_latest, sample_feature_matrix

logger = logging.getLogger(__name__)

SCORE_CHUNK = 5000


class TrainingError(Exception):
    """Training cannot proceed with the data at hand (one class, no labels, ...)."""


def _lock_project(project_id: int) -> Project:
    return Project.objects.select_for_update().get(pk=project_id)


@transaction.atomic
def model_version_request(
    *, project: Project, trigger: str = ModelVersion.Trigger.MANUAL
) -> ModelVersion:
    """Queue a retrain for ``project``; a version already queued absorbs the request.

    The training task is enqueued only after the surrounding transaction commits, so the
    worker always finds the row.
    """
    _lock_project(project.pk)
    label_count = label_count_current(project=project)
    queued = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.QUEUED).first()
    if queued is not None:
        ModelVersion.objects.filter(pk=queued.pk).update(requested_at_label_count=label_count)
        queued.requested_at_label_count = label_count
        return queued
    number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        trigger=trigger,
        requested_at_label_count=label_count,
        estimator=(project.model_spec or {}).get("estimator", DEFAULT_ESTIMATOR),
        query_strategy=project.query_strategy,
    )
    from learning.tasks import model_version_train_task

    version_id = version.pk
    transaction.on_commit(lambda: model_version_train_task.delay(version_id))
    return version


def model_version_request_if_due(*, project: Project) -> ModelVersion | None:
    """Queue a retrain when ``batch_size`` labels arrived since the newest version's request."""
    latest = model_version_latest(project=project)
    counted_from = latest.requested_at_label_count if latest else 0
    if label_count_current(project=project) - counted_from < project.batch_size:
        return None
    return model_version_request(project=project, trigger=ModelVersion.Trigger.BATCH)


def _claim(version_id: int) -> ModelVersion | None:
    """Move a queued version to training unless another one of its project is training."""
    with transaction.atomic():
        version = ModelVersion.objects.select_related("project").get(pk=version_id)
        _lock_project(version.project_id)
        version.refresh_from_db(fields=["status"])
        if version.status != ModelVersion.Status.QUEUED:
            return None
        stale_before = timezone.now() - dt.timedelta(seconds=settings.TRAINING_STALE_SECONDS)
        ModelVersion.objects.filter(
            project_id=version.project_id,
            status=ModelVersion.Status.TRAINING,
            started_at__lt=stale_before,
        ).update(status=ModelVersion.Status.FAILED, error="worker lost: training timed out")
        if ModelVersion.objects.filter(
            project_id=version.project_id, status=ModelVersion.Status.TRAINING
        ).exists():
            return None  # the running one kicks this version off when it finishes
        version.status = ModelVersion.Status.TRAINING
        version.started_at = timezone.now()
        version.save(update_fields=["status", "started_at"])
        return version


def _metrics(y_true: list[str], y_pred: np.ndarray, labels: list[str]) -> dict:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = sorted(set(y_true))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "labels": labels,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _fit(version: ModelVersion) -> None:
    project = version.project
    train_rows = labeled_samples(project=project, split=Sample.Split.POOL)
    test_rows = labeled_samples(project=project, split=Sample.Split.TEST)
    if not train_rows:
        raise TrainingError("no labeled pool samples to train on")
    y_train = [value for _s, value, _id in train_rows]
    if len(set(y_train)) < 2:
        raise TrainingError(f"labels of only one class ({y_train[0]!r}); need at least two")
    label_ids = sorted(label_id for _s, _v, label_id in train_rows + test_rows)
    X_train = sample_feature_matrix(project=project, samples=[s for s, _v, _id in train_rows])
    started = time.perf_counter()
    estimator = build_estimator(project.model_spec, kind=project.kind).fit(X_train, y_train)
    version.fit_seconds = time.perf_counter() - started
    version.trained_on_label_count = len(train_rows)
    version.test_label_count = len(test_rows)
    version.last_label_id = label_ids[-1]
    version.label_snapshot_sha256 = hashlib.sha256(
        ",".join(map(str, label_ids)).encode()
    ).hexdigest()
    if test_rows:
        X_test = sample_feature_matrix(project=project, samples=[s for s, _v, _id in test_rows])
        y_test = [value for _s, value, _id in test_rows]
        version.metrics = _metrics(y_test, estimator.predict(X_test), project.labels)
        version.accuracy = version.metrics["accuracy"]
        version.macro_f1 = version.metrics["macro_f1"]
    version.artifact_path, version.artifact_sha256 = artifacts.save(
        estimator, project_id=project.pk, number=version.number
    )
    version.sklearn_version = sklearn.__version__


def _served_macro_f1_on_current_test(project: Project, served: ModelVersion) -> float | None:
    """Re-evaluate the served model on today's test labels, so both compete on equal data."""
    test_rows = labeled_samples(project=project, split=Sample.Split.TEST)
    if not test_rows:
        return None
    estimator = artifacts.load(path=served.artifact_path, sha256=served.artifact_sha256)
    X_test = sample_feature_matrix(project=project, samples=[s for s, _v, _id in test_rows])
    y_test = [value for _s, value, _id in test_rows]
    present = sorted(set(y_test))
    return float(
        f1_score(y_test, estimator.predict(X_test), labels=present, average="macro", zero_division=0)
    )


@transaction.atomic
def model_version_promote(*, version: ModelVersion, note: str = "") -> ModelVersion:
    """Serve ``version`` instead of whichever version its project serves now."""
    if version.status != ModelVersion.Status.READY:
        raise TrainingError(f"version {version.number} is {version.status}, not ready")
    _lock_project(version.project_id)
    ModelVersion.objects.filter(project_id=version.project_id, is_served=True).update(
        is_served=False
    )
    version.is_served = True
    version.promotion_note = note or version.promotion_note
    version.save(update_fields=["is_served", "promotion_note"])
    return version


def _promote_if_better(version: ModelVersion) -> None:
    project = version.project
    served = ModelVersion.objects.filter(project=project, is_served=True).first()
    if served is None:
        model_version_promote(version=version, note="first ready model")
        return
    if version.macro_f1 is None:
        version.promotion_note = "not promoted: no labeled test samples to compare on"
        version.save(update_fields=["promotion_note"])
        return
    try:
        served_f1 = _served_macro_f1_on_current_test(project, served)
    except artifacts.ArtifactError as exc:
        logger.error("served artifact of %s unusable: %s", served, exc)
        served_f1 = None
    if served_f1 is None or version.macro_f1 >= served_f1:
        model_version_promote(
            version=version,
            note=f"macro-F1 {version.macro_f1:.3f} vs served v{served.number} "
            f"{'n/a' if served_f1 is None else f'{served_f1:.3f}'} on the same test labels",
        )
    else:
        version.promotion_note = (
            f"not promoted: macro-F1 {version.macro_f1:.3f} < served v{served.number} "
            f"{served_f1:.3f} on the same test labels"
        )
        version.save(update_fields=["promotion_note"])


def pool_score(*, project: Project, version: ModelVersion) -> int:
    """Score every unlabeled pool sample under ``version`` and store it; return the count."""
    estimator = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    samples = list(unlabeled_pool_samples(project=project).only("id", "image"))
    scored = 0
    for start in range(0, len(samples), SCORE_CHUNK):
        chunk = samples[start : start + SCORE_CHUNK]
        X = sample_feature_matrix(project=project, samples=chunk)
        scores = strategies.uncertainty_scores(
            estimator, X, strategy=project.query_strategy, seed=version.number
        )
        scored += sample_scores_write(sample_ids=[s.pk for s in chunk], scores=scores.tolist())
    return scored


def model_version_train(*, version_id: int) -> ModelVersion | None:
    """Train a queued version end to end: fit, evaluate, save, promote, rescore the pool.

    Returns None when the version was not claimed (already done, or another version of the
    project is training). A failure is recorded on the version and never unserves a model.
    """
    version = _claim(version_id)
    if version is None:
        return None
    try:
        _fit(version)
        version.status = ModelVersion.Status.READY
    except Exception as exc:  # any failure must be recorded on the version, never lost
        logger.exception("training %s failed", version)
        version.status = ModelVersion.Status.FAILED
        version.error = f"{type(exc).__name__}: {exc}"
    version.finished_at = timezone.now()
    version.save()
    if version.status == ModelVersion.Status.READY:
        _promote_if_better(version)
        served = ModelVersion.objects.filter(project=version.project, is_served=True).first()
        if served is not None:
            started = time.perf_counter()
            try:
                count = pool_score(project=version.project, version=served)
            except Exception as exc:  # the version stays ready; the queue keeps old scores
                logger.exception("rescoring the pool of %s failed", version.project)
                ModelVersion.objects.filter(pk=version.pk).update(
                    error=f"pool rescoring failed: {type(exc).__name__}: {exc}"
                )
            else:
                ModelVersion.objects.filter(pk=version.pk).update(
                    score_seconds=time.perf_counter() - started, scored_sample_count=count
                )
    _start_next_queued(version.project_id)
    return version


def _start_next_queued(project_id: int) -> None:
    from learning.tasks import model_version_train_task

    queued = (
        ModelVersion.objects.filter(project_id=project_id, status=ModelVersion.Status.QUEUED)
        .order_by("number")
        .values_list("pk", flat=True)
        .first()
    )
    if queued is not None:
        transaction.on_commit(lambda: model_version_train_task.delay(queued))
