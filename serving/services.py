"""Predict with a project's models, choose the served version, create and revoke API tokens."""
from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone

from annotation.errors import DomainError
from annotation.models import Project
from learning.models import ModelVersion
from learning.services import TrainingError, model_version_promote
from serving import model_cache
from serving.authentication import key_hash
from serving.instances import InvalidInstance, instances_featurize
from serving.models import ApiToken
from serving.selectors import model_version_get, model_version_served

__all__ = [
    "InvalidInstance",
    "Prediction",
    "PredictionBatch",
    "api_token_create",
    "api_token_revoke",
    "Promotion",
    "predict",
    "served_version_set",
]


@dataclass(frozen=True)
class Prediction:
    id: uuid.UUID
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
    proba = model.estimator.predict_proba(X)
    classes = [str(c) for c in model.estimator.classes_]
    predictions = []
    for row in proba:
        by_label = {label: 0.0 for label in project.labels}
        by_label.update({label: float(p) for label, p in zip(classes, row)})
        best = int(np.argmax(row))
        predictions.append(
            Prediction(id=uuid.uuid4(), label=classes[best], confidence=float(row[best]),
                       probabilities=by_label)
        )
    return PredictionBatch(
        model_version_id=model.version_id, model_version=model.number, predictions=predictions
    )


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
