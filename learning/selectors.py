"""Reads of model versions for pages and APIs: the list, the served one, staleness, the curve."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from annotation.models import Label, Project
from learning.models import ModelVersion


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    """Return the project's versions, newest first."""
    return ModelVersion.objects.filter(project=project).order_by("-number")


def model_version_served(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_served=True).first()


def retrain_batch_start(*, project: Project) -> int:
    """The newest version's ``requested_at_label_count``: where the current batch began."""
    return (
        ModelVersion.objects.filter(project=project).order_by("-number")
        .values_list("requested_at_label_count", flat=True).first()
    ) or 0


@dataclass(frozen=True)
class Staleness:
    """How far the queue's order lags the labels: labels added since the ranking model."""

    version: int | None  # the served version that ordered the queue, None before any
    labels_since: int
    scoring: bool  # a rescoring is under way


def ranking_staleness(*, project: Project) -> Staleness:
    """Return how many current labels arrived after the served model's last training label."""
    served = model_version_served(project=project)
    scoring = ModelVersion.objects.filter(
        project=project, score_chunks_total__isnull=False, scored_sample_count__isnull=True,
        status=ModelVersion.Status.READY,
    ).exists()
    labels = Label.objects.current().filter(sample__project=project)
    if served is None or served.last_label_id is None:
        return Staleness(version=None, labels_since=labels.count(), scoring=scoring)
    return Staleness(version=served.number, scoring=scoring,
                     labels_since=labels.filter(pk__gt=served.last_label_id).count())


@dataclass(frozen=True)
class CurvePoint:
    number: int
    labels: int
    macro_f1: float
    x: float  # position in the chart, 0-100
    y: float


@dataclass(frozen=True)
class LearningCurve:
    points: list[CurvePoint]
    polyline: str  # "x,y x,y ..." for an SVG polyline in a 100 x 100 box
    max_labels: int


def learning_curve(*, project: Project) -> LearningCurve:
    """Return macro-F1 on the test split against labels trained on, one point per version."""
    rows = list(
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY,
                                    macro_f1__isnull=False, trained_on_label_count__isnull=False)
        .order_by("number").values_list("number", "trained_on_label_count", "macro_f1")
    )
    max_labels = max((labels for _n, labels, _f in rows), default=0)
    points = [
        CurvePoint(number=n, labels=labels, macro_f1=f1,
                   x=round(100.0 * labels / max_labels, 2) if max_labels else 0.0,
                   y=round(100.0 * (1.0 - f1), 2))
        for n, labels, f1 in rows
    ]
    return LearningCurve(points=points, max_labels=max_labels,
                         polyline=" ".join(f"{p.x},{p.y}" for p in points))
