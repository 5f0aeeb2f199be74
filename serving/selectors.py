"""Reads for the API: model versions, prediction logs by prediction id, live accuracy."""
from __future__ import annotations

import uuid

from django.db.models import QuerySet

from annotation.models import ApiToken, Project
from learning.models import ModelVersion
from serving.model_cache import MAX_VERSION_NUMBER
from serving.models import PredictionLog

MODEL_VERSION_LIST_FIELDS = (
    "id", "number", "status", "accuracy", "macro_f1", "trained_on_label_count", "is_served",
    "created_at",
)


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    """Return the project's versions, newest first, with only the columns a list shows."""
    return (
        ModelVersion.objects.filter(project=project)
        .only(*MODEL_VERSION_LIST_FIELDS)
        .order_by("-number")
    )


def model_version_get(*, project: Project, number: int) -> ModelVersion | None:
    """Return version ``number`` of the project, or None (also for out-of-range numbers)."""
    if not 0 < number <= MAX_VERSION_NUMBER:
        return None
    return ModelVersion.objects.filter(project=project, number=number).first()


def model_version_served(*, project: Project) -> ModelVersion | None:
    """Return the version the project serves now, or None."""
    return ModelVersion.objects.filter(project=project, is_served=True).first()


def prediction_log_get(*, project: Project, prediction_id: uuid.UUID) -> PredictionLog | None:
    """Return the log row of a prediction by the id the predict API returned, or None.

    Logs are written in bulk within ``PREDICTION_LOG_FLUSH_SECONDS``, so a caller that
    finds nothing for a fresh id should flush (``prediction_log_flush``) and look again
    before calling the id unknown.
    """
    return PredictionLog.objects.filter(project=project, prediction_id=prediction_id).first()


def api_token_list(*, project: Project) -> QuerySet[ApiToken]:
    """Return the project's tokens (not personal ones), newest first."""
    return ApiToken.objects.filter(project=project, user__isnull=True).order_by("-created_at")
