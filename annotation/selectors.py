"""Reads for projects, samples and labels."""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from annotation.models import Label, Project, Sample


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
