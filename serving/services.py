"""Predict with a project's served model, and create API tokens."""
from __future__ import annotations

import base64
import binascii
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction

from annotation.errors import DomainError
from annotation.models import Project
from learning import features
from serving.authentication import key_hash
from serving.model_cache import served_model
from serving.models import ApiToken


class InvalidInstance(DomainError):
    code = "invalid_instance"


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class PredictionBatch:
    model_version_id: int
    model_version: int
    predictions: list[Prediction]


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


def _image_row(index: int, instance: dict, project: Project) -> np.ndarray:
    encoded = instance.get("image_base64")
    if not isinstance(encoded, str) or not encoded:
        raise InvalidInstance(
            f"instances[{index}]: an image project needs 'image_base64', a base64 string",
            detail={"index": index},
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInstance(f"instances[{index}]: image_base64 is not valid base64",
                              detail={"index": index})
    try:
        image = features.open_image(io.BytesIO(data), max_pixels=settings.MAX_IMAGE_PIXELS)
    except features.FeatureError as exc:
        raise InvalidInstance(f"instances[{index}]: {exc}", detail={"index": index})
    return features.image_vector(image, size=project.image_size)


def instances_featurize(*, project: Project, instances: Sequence[dict]) -> np.ndarray:
    """Return the feature matrix of API instances, naming the first bad one if any."""
    if project.kind != Project.Kind.IMAGE:
        raise InvalidInstance(f"projects of kind {project.kind!r} cannot predict yet")
    return np.vstack([_image_row(i, inst, project) for i, inst in enumerate(instances)])


def predict(*, project: Project, instances: Sequence[dict]) -> PredictionBatch:
    """Predict every instance with one ``predict_proba`` call on the served model."""
    X = instances_featurize(project=project, instances=instances)
    model = served_model(project_id=project.pk)
    proba = model.estimator.predict_proba(X)
    classes = [str(c) for c in model.estimator.classes_]
    predictions = []
    for row in proba:
        by_label = {label: 0.0 for label in project.labels}
        by_label.update({label: float(p) for label, p in zip(classes, row)})
        best = int(np.argmax(row))
        predictions.append(
            Prediction(label=classes[best], confidence=float(row[best]), probabilities=by_label)
        )
    return PredictionBatch(
        model_version_id=model.version_id, model_version=model.number, predictions=predictions
    )
