"""Reads of the labels that are probably wrong: the review page's filter (through
annotation's ``suspicious_labels`` hook) and ``GET …/labels/suspicious``."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from annotation.models import Project
from learning.models import LabelSuspicion, LabelSuspicionRun


@dataclass(frozen=True)
class Suspicion:
    sample_id: int
    external_id: str
    split: str
    value: str  # the current label judged
    likely: str  # what the model (or the annotators' majority) says instead
    score: float  # 0..1, higher is more suspicious
    reason: str  # "model" | "disagreement"
    version: int | None  # the retrain after which it was judged


def _current(project: Project):
    # A row whose judged label was superseded since (corrected, undone, changed) is off
    # the list at once; the next run judges the new label.
    return LabelSuspicion.objects.filter(project=project, label__superseded_at__isnull=True)


def label_suspicion_list(*, project: Project, sample_ids: Sequence[int] | None = None,
                         start: int = 0, limit: int | None = None) -> list[Suspicion]:
    """The project's probably wrong current labels, most suspicious first (ties by sample
    id); only those of ``sample_ids`` when given; ``limit`` rows from position ``start``."""
    rows = _current(project)
    if sample_ids is not None:
        rows = rows.filter(sample_id__in=list(sample_ids))
    rows = rows.order_by("-score", "sample_id").values_list(
        "sample_id", "sample__external_id", "sample__split", "value", "likely", "score",
        "reason", "version__number")
    rows = rows[start:] if limit is None else rows[start:start + limit]
    return [Suspicion(*row) for row in rows]


def label_suspicion_count(*, project: Project) -> int:
    return _current(project).count()


def label_suspicion_run(*, project: Project) -> LabelSuspicionRun | None:
    """The project's latest search for wrong labels (None before the first)."""
    return LabelSuspicionRun.objects.select_related("version").filter(project=project).first()
