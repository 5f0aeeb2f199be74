"""Reads for model versions and the feature matrices training and scoring need."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import QuerySet

from annotation.models import Project, Sample
from learning import features
from learning.models import ModelVersion


def sample_feature_matrix(*, project: Project, samples: Sequence[Sample]) -> np.ndarray:
    """Return the feature matrix of ``samples``, one row each, in the given order."""
    if project.kind != Project.Kind.IMAGE:
        raise features.FeatureError(f"projects of kind {project.kind!r} are not supported yet")

    def streams():
        for sample in samples:
            with default_storage.open(sample.image.name, "rb") as stream:
                yield stream

    return features.image_matrix(
        streams(), size=project.image_size, max_pixels=settings.MAX_IMAGE_PIXELS
    )


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    """Return the project's versions, newest first."""
    return ModelVersion.objects.filter(project=project).order_by("-number")


def model_version_served(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_served=True).first()


def model_version_latest(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project).order_by("-number").first()
