"""Predict with a project's models, record feedback, choose the served version, manage tokens."""
from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.errors import DomainError
from annotation.models import Label, Project
from annotation.services import (
    label_check,
    production_label_correct,
    production_sample_create,
    production_sample_feedback,
)
from learning.exported_model import label_order
from learning.models import ModelVersion
from learning.services import TrainingError, model_version_promote
from serving import model_cache
from annotation.authentication import key_hash
from serving.instances import InvalidInstance, instance_payload, instances_featurize
from annotation.models import ApiToken
from serving.models import PredictionLog
from serving.prediction_log import prediction_log_flush
from serving.selectors import model_version_get, model_version_served, prediction_log_get

__all__ = [
    "Feedback",
    "InvalidInstance",
    "Prediction",
    "PredictionBatch",
    "UnknownPrediction",
    "api_token_create",
    "api_token_revoke",
    "feedback_record",
    "Promotion",
    "predict",
    "served_version_set",
]


class UnknownPrediction(DomainError):
    code = "unknown_prediction"
    status = 404


class InstanceNotKept(DomainError):
    code = "instance_not_kept"


class Prediction(NamedTuple):
    """One instance's prediction (a named tuple: made in C, a batch's worth at a time)."""

    id: str  # a time-ordered (version 7) UUID in its canonical text form
    label: str
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class PredictionBatch:
    model_version_id: int
    model_version: int
    predictions: list[Prediction]


@dataclass(frozen=True)
class Promotion:
    version: ModelVersion
    previous_version: int | None


@transaction.atomic
def api_token_create(
    *, project: Project, scopes: Sequence[str] = ("predict",), name: str = ""
) -> tuple[ApiToken, str]:
    """Create a token and return it with its key; only the key's hash is stored."""
    unknown = set(scopes) - set(ApiToken.Scope.values)
    if unknown or not scopes:
        raise DomainError(f"unknown scopes {sorted(unknown)}; choose from {ApiToken.Scope.values}")
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project,
        name=name,
        key_hash=key_hash(key),
        key_prefix=key[:8],
        scopes=sorted(set(scopes)),
    )
    return token, key


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token from its next request on; revoking twice keeps the first time."""
    now = timezone.now()
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    token.refresh_from_db(fields=["revoked_at"])
    return token


def predict(
    *, project: Project, instances: Sequence[Mapping], version: int | None = None
) -> PredictionBatch:
    """Predict every instance with one ``predict_proba`` call.

    Use the served model, or version number ``version`` when given (404 if the project has
    no such version, 409 unless it is ready). Each prediction gets a fresh id clients can
    quote when they send feedback.
    """
    X = instances_featurize(project=project, instances=instances)
    if version is None:
        model = model_cache.served_model(project_id=project.pk)
    else:
        model = model_cache.version_model(project_id=project.pk, number=version)
    proba = model.predict_proba(X)
    labels, columns = _label_columns(tuple(project.labels), model)
    if columns is None:  # the model's classes are the labels, in order
        full = np.asarray(proba, dtype=np.float64)
    else:
        full = np.zeros((len(proba), len(labels)))  # project label order, 0 for unseen classes
        full[:, columns] = proba
    best = full.argmax(axis=1)
    confidence = full.max(axis=1).tolist()
    # Built column by column with C loops (map, zip): this runs for every row served.
    probabilities = map(dict, map(zip, repeat(labels), full.tolist()))
    predictions = list(map(Prediction, _prediction_ids(len(full)),
                           map(labels.__getitem__, best.tolist()), confidence, probabilities))
    return PredictionBatch(
        model_version_id=model.version_id, model_version=model.number, predictions=predictions
    )


def _prediction_ids(n: int) -> list[str]:
    """Return ``n`` fresh time-ordered (version 7, RFC 9562) UUIDs as text, in order.

    Ids made in the same millisecond or later sort after earlier ones, so the unique index
    on ``PredictionLog.prediction_id`` grows at its right edge: random (version 4) ids cost
    five times as much per inserted row once the table holds a few hundred thousand rows.
    A batch takes 73 random bits once and counts up from there (RFC 9562's monotonic
    counter), which also makes the ids cheap to produce.
    """
    rand = int.from_bytes(os.urandom(10)) & ~(1 << 61)  # 12 + 62 bits, counter headroom
    first = ((time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
             | 0b10 << 62 | rand & (1 << 62) - 1)
    low = first & (1 << 48) - 1  # the last group, 12 hex digits
    if low + n <= 1 << 48:  # no carry past it: the first four groups are the batch's
        h = f"{first:032x}"
        head = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"
        return [f"{head}{value:012x}" for value in range(low, low + n)]
    ids = []
    for value in range(first, first + n):
        h = f"{value:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


_columns_cache: dict[tuple, tuple[tuple[str, ...], list[int] | None]] = {}


def _label_columns(project_labels: tuple[str, ...], model: model_cache.LoadedModel
                   ) -> tuple[tuple[str, ...], list[int] | None]:
    """Return the output labels (the project's, then any class it no longer has) and, for
    each of the model's classes, its column among them (None when each class is in its own
    column already); cached per (labels, version)."""
    key = (project_labels, model.version_id, id(model.estimator))
    hit = _columns_cache.get(key)
    if hit is None:
        labels, columns = label_order(project_labels, model.estimator.classes_)
        if list(columns) == list(range(len(labels))):
            columns = None
        hit = (tuple(labels), columns)  # the order MLflow exports answer in too
        if len(_columns_cache) > 256:
            _columns_cache.clear()
        _columns_cache[key] = hit
    return hit


@dataclass(frozen=True)
class Feedback:
    prediction_id: uuid.UUID | None
    sample_id: int | None
    label: str
    predicted_label: str | None
    created: bool  # False when the same feedback had been recorded before

    @property
    def correct(self) -> bool | None:
        return None if self.predicted_label is None else self.predicted_label == self.label


def _log_for_feedback(project: Project, prediction_id: uuid.UUID) -> PredictionLog:
    log = prediction_log_get(project=project, prediction_id=prediction_id)
    if log is None and prediction_log_flush():  # served by this process, not written yet
        log = prediction_log_get(project=project, prediction_id=prediction_id)
    if log is None:
        raise UnknownPrediction(
            f"this project has no prediction {str(prediction_id)!r} (predictions are recorded "
            "within about a second of being served)",
            detail={"prediction_id": str(prediction_id)},
        )
    return log


CLIENT = PredictionLog.FeedbackSource.CLIENT


def feedback_record(
    *, project: Project, label: str, prediction_id: uuid.UUID | None = None,
    instance: Mapping | None = None, annotator: AbstractBaseUser | None = None,
) -> Feedback:
    """Record the true ``label`` of an earlier prediction, or of a new ``instance``.

    Either way the instance becomes a labeled production sample in the pool (training data;
    it counts toward the retrain batch). For a prediction, the instance kept on its log row
    is used, or ``instance`` when none was kept (too large); the log row gets the true label
    and the time, which is what live accuracy is computed from. Repeating the feedback of a
    prediction is idempotent; a different label corrects it (the old label stays as
    history). ``annotator`` defaults to the project's feedback user.
    """
    label_check(project=project, value=label)
    if prediction_id is None:
        if instance is None:
            raise InvalidInstance("send a 'prediction_id', an 'instance', or both")
        payload = instance_payload(project=project, instance=instance)
        made = production_sample_create(project=project, payload=payload, value=label,
                                        annotator=annotator)
        return Feedback(prediction_id=None, sample_id=made.sample_id, label=label,
                        predicted_label=None, created=True)
    found = _log_for_feedback(project, prediction_id)
    with transaction.atomic():
        log = PredictionLog.objects.select_for_update().get(pk=found.pk)
        now = timezone.now()
        if log.feedback_at is not None:
            created = log.true_label != label
            if created and log.sample_id is not None:
                current = Label.objects.current().filter(sample_id=log.sample_id).first()
                if current is not None:
                    production_label_correct(label=current, value=label)
            if created:
                PredictionLog.objects.filter(pk=log.pk).update(
                    true_label=label, feedback_at=now, feedback_source=CLIENT)
            elif log.feedback_source != CLIENT:  # the client confirms a routed input's label
                PredictionLog.objects.filter(pk=log.pk).update(feedback_source=CLIENT)
            return Feedback(prediction_id=prediction_id, sample_id=log.sample_id, label=label,
                            predicted_label=log.predicted_label, created=created)
        if log.sample_id is not None:  # a rule routed it to annotators: the client's label settles it
            production_sample_feedback(project=project, sample_id=log.sample_id, value=label,
                                       annotator=annotator)
            PredictionLog.objects.filter(pk=log.pk).update(true_label=label, feedback_at=now,
                                                           feedback_source=CLIENT)
            return Feedback(prediction_id=prediction_id, sample_id=log.sample_id, label=label,
                            predicted_label=log.predicted_label, created=True)
        source = log.instance if log.instance is not None else instance
        if source is None:
            raise InstanceNotKept(
                "the instance of this prediction was not kept (it was larger than "
                "PREDICTION_LOG_INSTANCE_MAX_BYTES); send it again as 'instance'",
                detail={"prediction_id": str(prediction_id)},
            )
        payload = instance_payload(project=project, instance=source)
        made = production_sample_create(project=project, payload=payload, value=label,
                                        annotator=annotator)
        # The sample holds the instance now: drop the copy on the log row.
        PredictionLog.objects.filter(pk=log.pk).update(
            true_label=label, feedback_at=now, feedback_source=CLIENT, sample_id=made.sample_id,
            instance=None)
    return Feedback(prediction_id=prediction_id, sample_id=made.sample_id, label=label,
                    predicted_label=log.predicted_label, created=True)


def served_version_set(*, project: Project, number: int, note: str = "") -> Promotion:
    """Serve version ``number`` of ``project`` (roll back or forward); only ready versions.

    The artifact is loaded and sha-checked first (warming this process's cache), so a
    version that no process could serve is refused with 409 instead of being promoted.
    Other processes pick the change up within ``SERVING_MODEL_CHECK_SECONDS``.
    """
    version = model_version_get(project=project, number=number)
    if version is None:
        raise model_cache.UnknownVersion(
            f"this project has no model version {number}", detail={"version": number}
        )
    model_cache.version_model(project_id=project.pk, number=number)  # 409 unless ready and intact
    previous = model_version_served(project=project)
    try:  # model_version_promote is atomic and locks the project row
        version = model_version_promote(
            version=version, note=note or f"promoted through the API at {timezone.now():%Y-%m-%d %H:%M:%S} UTC"
        )
    except TrainingError as exc:  # the version changed state under us
        raise model_cache.VersionNotReady(str(exc), detail={"version": number}) from exc
    project_id = project.pk
    transaction.on_commit(lambda: model_cache.invalidate(project_id))  # now, unless nested
    return Promotion(version=version, previous_version=previous.number if previous else None)
