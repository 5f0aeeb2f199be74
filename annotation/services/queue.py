"""Writes of the labeling queue: leases, labels and precomputed scores."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.errors import InvalidLabel, SampleNotAvailable
from annotation.models import Label, Project, Sample
from annotation.services.projects import LABELING_ROLES, member_require


def _split_for(random_key: float, test_fraction: float) -> str:
    return Sample.Split.TEST if random_key < test_fraction else Sample.Split.POOL


@transaction.atomic
def samples_create_images(
    *, project: Project, images: Iterable[tuple[str, bytes]], seed_split: bool = True
) -> int:
    """Store image files as samples; a random ``test_fraction`` of them goes to the test split.

    ``images`` yields (external id, encoded image bytes). Returns how many were created.
    """
    created = 0
    for external_id, data in images:
        sample = Sample(project=project, external_id=external_id)
        if seed_split:
            sample.split = _split_for(sample.random_key, project.test_fraction)
        sample.image.save(f"{external_id}.png", ContentFile(data), save=False)
        sample.save()
        created += 1
    return created


def _lease_duration() -> dt.timedelta:
    return dt.timedelta(seconds=settings.LEASE_SECONDS)


def _free_now(now: dt.datetime) -> Q:
    return Q(leased_by__isnull=True) | Q(lease_expires__lte=now)


def _wants_test_sample(project: Project) -> bool:
    """Keep the labeled test split at ``test_fraction`` of all labels, drawn at random."""
    labeled = Sample.objects.filter(project=project).labeled()
    total = labeled.count()
    in_test = labeled.in_test().count()
    return in_test < project.test_fraction * (total + 1)


def _lease_first_free(
    *, project: Project, split: str, annotator: AbstractBaseUser, now: dt.datetime
) -> Sample | None:
    candidates = Sample.objects.filter(project=project, split=split).unlabeled().filter(_free_now(now))
    if split == Sample.Split.TEST:
        candidates = candidates.order_by("random_key")
    else:
        candidates = candidates.order_by("-score", "random_key")
    if connection.features.has_select_for_update_skip_locked:
        # Rows another annotator is leasing right now are skipped, not waited for.
        candidates = candidates.select_for_update(skip_locked=True, of=("self",))
    sample = candidates.first()
    if sample is None:
        return None
    expires = now + _lease_duration()
    # Conditional update: on SQLite (no row locks) this is what keeps two annotators apart.
    won = (
        Sample.objects.filter(pk=sample.pk)
        .unlabeled()
        .filter(_free_now(now))
        .update(leased_by=annotator, lease_expires=expires)
    )
    if not won:
        return None
    sample.leased_by_id, sample.lease_expires = annotator.pk, expires
    return sample


@transaction.atomic
def sample_lease_next(*, project: Project, annotator: AbstractBaseUser) -> Sample | None:
    """Lease and return the next sample for ``annotator``, or None when nothing is left.

    An annotator who already holds a live lease gets that sample back (a reload must not
    burn samples). Otherwise the test split is drawn at random while it is below its share
    of labels, and the pool by descending precomputed uncertainty; no model is called here.
    """
    member_require(project=project, user=annotator, roles=LABELING_ROLES)
    now = timezone.now()
    held = (
        Sample.objects.filter(project=project, leased_by_id=annotator.pk, lease_expires__gt=now)
        .unlabeled()
        .order_by("lease_expires")
        .first()
    )
    if held is not None:
        return held
    splits = [Sample.Split.TEST, Sample.Split.POOL]
    if not _wants_test_sample(project):
        splits.reverse()
    for split in splits:
        for _attempt in range(3):
            sample = _lease_first_free(project=project, split=split, annotator=annotator, now=now)
            if sample is not None:
                return sample
            if not Sample.objects.filter(project=project, split=split).unlabeled().filter(
                _free_now(now)
            ).exists():
                break
    return None


@transaction.atomic
def label_submit(
    *,
    sample: Sample,
    annotator: AbstractBaseUser,
    value: str,
    duration_ms: int | None = None,
) -> Label:
    """Record ``annotator``'s label for ``sample`` and request a retrain when a batch is full.

    Submitting the same value twice is idempotent. The sample row is locked so that two
    submits for one sample serialize.
    """
    project = sample.project
    member_require(project=project, user=annotator, roles=LABELING_ROLES)
    if value not in project.labels:
        raise InvalidLabel(
            f"{value!r} is not a label of project {project.slug!r}", detail=project.labels
        )
    sample = Sample.objects.select_for_update().get(pk=sample.pk)
    existing = Label.objects.current().filter(sample=sample, annotator_id=annotator.pk).first()
    if existing is not None:
        if existing.value == value:
            return existing
        raise SampleNotAvailable("you already labeled this sample", detail={"sample": sample.pk})
    if sample.status == Sample.Status.LABELED:
        raise SampleNotAvailable("this sample is already labeled", detail={"sample": sample.pk})
    now = timezone.now()
    if sample.leased_by_id not in (None, annotator.pk) and sample.lease_expires > now:
        raise SampleNotAvailable(
            "this sample is leased by another annotator", detail={"sample": sample.pk}
        )
    label = Label.objects.create(
        sample=sample, annotator=annotator, value=value, duration_ms=duration_ms
    )
    Sample.objects.filter(pk=sample.pk).update(
        status=Sample.Status.LABELED, leased_by=None, lease_expires=None
    )
    from learning.services import model_version_request_if_due  # learning depends on us

    model_version_request_if_due(project=project)
    return label


@transaction.atomic
def sample_scores_write(*, sample_ids: Sequence[int], scores: Sequence[float]) -> int:
    """Write precomputed uncertainty scores in bulk; return how many rows were updated."""
    if not sample_ids:
        return 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Sample._meta.db_table} AS s SET score = v.score "
                "FROM unnest(%s::bigint[], %s::float8[]) AS v(id, score) WHERE s.id = v.id",
                [list(map(int, sample_ids)), list(map(float, scores))],
            )
            return cursor.rowcount
    by_id = dict(zip(map(int, sample_ids), map(float, scores)))
    samples = [Sample(pk=pk, score=score) for pk, score in by_id.items()]
    Sample.objects.bulk_update(samples, ["score"], batch_size=500)
    return len(samples)

