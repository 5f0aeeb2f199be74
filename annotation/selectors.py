"""Reads for projects, samples and labels."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from annotation.models import ImportJob, Label, Project, Sample

EXPORT_CHUNK = 2000


def project_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Return the projects ``user`` is a member of (all of them for a superuser)."""
    projects = Project.objects.all()
    if not user.is_superuser:
        projects = projects.filter(memberships__user_id=user.pk)
    return projects.order_by("name")


def project_get_for_user(*, slug: str, user: AbstractBaseUser) -> Project | None:
    """Return the project with ``slug`` if ``user`` may see it, else None."""
    return project_list_for_user(user=user).filter(slug=slug).first()


@dataclass(frozen=True)
class Progress:
    total: int
    labeled: int
    labeled_pool: int
    labeled_test: int
    until_retrain: int

    @property
    def percent(self) -> float:
        return 100.0 * self.labeled / self.total if self.total else 0.0


def project_progress(*, project: Project, requested_at_label_count: int) -> Progress:
    """Return labeling progress and how many labels remain until the next retrain."""
    counts = Sample.objects.filter(project=project).aggregate(
        total=Count("id"),
        labeled_pool=Count("id", filter=Q(status=Sample.Status.LABELED, split=Sample.Split.POOL)),
        labeled_test=Count("id", filter=Q(status=Sample.Status.LABELED, split=Sample.Split.TEST)),
    )
    labeled = counts["labeled_pool"] + counts["labeled_test"]
    since = label_count_current(project=project) - requested_at_label_count
    return Progress(
        total=counts["total"],
        labeled=labeled,
        labeled_pool=counts["labeled_pool"],
        labeled_test=counts["labeled_test"],
        until_retrain=max(project.batch_size - since, 0),
    )


def label_count_current(*, project: Project) -> int:
    """Return how many current (not superseded) labels the project has."""
    return Label.objects.current().filter(sample__project=project).count()


def labeled_samples(*, project: Project, split: str) -> list[tuple[Sample, str, int]]:
    """Return (sample, label value, label id) for every labeled sample in ``split``.

    With several annotators per sample, the most recent current label wins.
    """
    labels = (
        Label.objects.current()
        .filter(sample__project=project, sample__split=split)
        .select_related("sample")
        .order_by("sample_id", "-created_at", "-id")
    )
    seen: set[int] = set()
    rows = []
    for label in labels:
        if label.sample_id in seen:
            continue
        seen.add(label.sample_id)
        rows.append((label.sample, label.value, label.id))
    return rows


def unlabeled_pool_samples(*, project: Project) -> QuerySet[Sample]:
    """Return the pool samples still waiting for a label, in id order."""
    return Sample.objects.filter(project=project).in_pool().unlabeled().order_by("id")


def import_job_get(*, project: Project, job_id: int) -> ImportJob | None:
    return ImportJob.objects.filter(project=project, pk=job_id).first()


def import_job_list(*, project: Project, limit: int = 10) -> QuerySet[ImportJob]:
    """Return the project's latest import jobs, newest first."""
    return ImportJob.objects.filter(project=project).select_related("user")[:limit]


CURRENT_EXPORT_FIELDS = ("sample_id", "external_id", "split", "label", "annotator", "labeled_at")
HISTORY_EXPORT_FIELDS = ("label_id", "sample_id", "external_id", "split", "label", "annotator",
                         "created_at", "superseded_at", "duration_ms")


def label_export_rows(*, project: Project, history: bool = False) -> Iterator[dict]:
    """Yield the project's labels as flat dicts, streaming from the database in chunks.

    Current: one row per labeled sample, its most recent current label. History: every
    label ever given, superseded ones included, in the order they were given per sample.
    """
    labels = Label.objects.filter(sample__project=project)
    if not history:
        labels = labels.filter(superseded_at__isnull=True).order_by("sample_id", "-created_at", "-id")
    else:
        labels = labels.order_by("sample_id", "created_at", "id")
    values = labels.values_list(
        "id", "sample_id", "sample__external_id", "sample__split", "value",
        "annotator__username", "created_at", "superseded_at", "duration_ms",
    ).iterator(chunk_size=EXPORT_CHUNK)
    previous = None
    for (label_id, sample_id, external_id, split, value, annotator, created_at, superseded_at,
         duration_ms) in values:
        if history:
            yield {"label_id": label_id, "sample_id": sample_id, "external_id": external_id,
                   "split": split, "label": value, "annotator": annotator,
                   "created_at": created_at, "superseded_at": superseded_at,
                   "duration_ms": duration_ms}
            continue
        if sample_id == previous:
            continue
        previous = sample_id
        yield {"sample_id": sample_id, "external_id": external_id, "split": split,
               "label": value, "annotator": annotator, "labeled_at": created_at}


def label_export_chunks(*, project: Project, history: bool, fmt: str) -> Iterator[str]:
    """Yield the project's labels as CSV or JSONL text, in chunks, for streaming."""
    from annotation.exports import export_chunks

    fields = HISTORY_EXPORT_FIELDS if history else CURRENT_EXPORT_FIELDS
    return export_chunks(label_export_rows(project=project, history=history), fields, fmt)
