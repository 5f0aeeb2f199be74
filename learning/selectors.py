"""Reads for model versions and the feature matrices training and scoring need."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import QuerySet

from annotation.models import Project, Sample
from annotation.selectors import labeled_samples
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


def project_labeled_payloads(*, project: Project) -> tuple[object, np.ndarray]:
    """Return the featurizer input and current label of every labeled sample, pool and test.

    Image projects yield pixel rows; text projects, texts; tabular projects, column -> value
    rows. For replaying active learning on what annotators already labeled.
    """
    rows = labeled_samples(project=project, split=Sample.Split.POOL) + labeled_samples(
        project=project, split=Sample.Split.TEST
    )
    samples = [sample for sample, _value, _id in rows]
    y = np.asarray([value for _sample, value, _id in rows], dtype=str)
    if project.kind == Project.Kind.IMAGE:
        return sample_feature_matrix(project=project, samples=samples), y
    if project.kind == Project.Kind.TEXT:
        return [sample.text for sample in samples], y
    return [sample.values or {} for sample in samples], y


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    """Return the project's versions, newest first."""
    return ModelVersion.objects.filter(project=project).order_by("-number")


def model_version_served(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_served=True).first()


def model_version_latest(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project).order_by("-number").first()
