"""The labeling queue's leases: hand out the next sample, hold, peek, skip and undo.

Every write that changes a sample's leases or labels first locks that sample's row, so
leasing, submitting, skipping and undoing one sample serialize; different samples never
wait on each other (PostgreSQL skips rows another annotator is leasing right now). The
test split is interleaved with the pool, drawn at random, to keep its share of labels. On
PostgreSQL a hand-out with overlap 1 is one call of ``annotation_lease_next`` (``queue_db``);
the Python path here stays the specification and SQLite's path.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.access import LABELING_ROLES, member_require
from annotation.errors import NothingToUndo
from annotation.models import Label, LabelCounts, Lease, Membership, Project, Sample
from annotation.services import ledger, queue_db


def _lease_duration() -> dt.timedelta:
    return dt.timedelta(seconds=settings.LEASE_SECONDS)


def _wants_test_sample(project: Project) -> bool:
    """Keep the labeled test split at ``test_fraction`` of all labeled samples, drawn at random;
    and hand out first the production inputs a rule drew at random into the test split
    (``random_key`` below 0: ``production.production_samples_route``), which the promotion
    check waits for.

    Reads the running counts, never counts rows: this is on every hand-out (the second
    check is one probe of the ``sample_queue_random`` index).
    """
    counts = queue_db.fetch_one(
        f"SELECT labeled_pool, labeled_test FROM {queue_db.table(LabelCounts)}"
        " WHERE project_id = %s",
        [project.pk],
    )
    pool, test = counts or (0, 0)
    if test < project.test_fraction * (pool + test + 1):
        return True
    return Sample.objects.filter(project=project, split=Sample.Split.TEST,
                                 status=Sample.Status.UNLABELED, random_key__lt=0).exists()


def _live_leases(now: dt.datetime) -> QuerySet[Lease]:
    return Lease.objects.filter(sample_id=OuterRef("pk"), expires_at__gt=now, skipped=False)


def _available_to(
    samples: QuerySet[Sample], *, project: Project, annotator: AbstractBaseUser, now: dt.datetime
) -> QuerySet[Sample]:
    """Filter ``samples`` to those with a free place for ``annotator``.

    A place is free while current labels plus other annotators' live leases are fewer than
    the project's overlap. An annotator never gets a sample they labeled, skipped or hold.
    """
    mine = Lease.objects.filter(sample_id=OuterRef("pk"), annotator_id=annotator.pk)
    samples = samples.filter(~Exists(mine))
    if project.overlap == 1:
        # Unlabeled means no current label at all here; one anti-join does the rest.
        return samples.filter(~Exists(_live_leases(now)))
    held = Coalesce(
        Subquery(
            _live_leases(now).order_by().values("sample_id").annotate(n=Count("*")).values("n")
        ),
        0,
    )
    labeled_by_me = Label.objects.current().filter(
        sample_id=OuterRef("pk"), annotator_id=annotator.pk
    )
    return (
        samples.filter(~Exists(labeled_by_me))
        .annotate(held=held)
        .filter(label_count__lt=project.overlap - F("held"))
    )


def _queue(project: Project, split: str) -> QuerySet[Sample]:
    samples = Sample.objects.filter(project=project, split=split).unlabeled()
    if split == Sample.Split.TEST:
        return samples.order_by("random_key")
    return samples.order_by("-score", "random_key")


def _still_available(sample_id: int, *, project: Project, annotator: AbstractBaseUser,
                     now: dt.datetime) -> bool:
    # A fresh statement: under READ COMMITTED it sees leases committed after the candidate
    # query's snapshot, which the row lock alone would not reveal (leases are other rows).
    if project.overlap == 1 and connection.features.has_select_for_update_skip_locked:
        # The locked row's own columns (status) were rechecked by the lock itself; only the
        # leases need a fresh look: none of mine, no live one of anybody's.
        return queue_db.fetch_one(
            f"SELECT 1 FROM {queue_db.table(Lease)} WHERE sample_id = %s"
            " AND (annotator_id = %s OR (expires_at > %s AND NOT skipped)) LIMIT 1",
            [sample_id, annotator.pk, queue_db.db_datetime(now)],
        ) is None
    return _available_to(
        Sample.objects.filter(pk=sample_id).unlabeled(),
        project=project, annotator=annotator, now=now,
    ).exists()


def _lease(sample: Sample, *, annotator: AbstractBaseUser, now: dt.datetime) -> None:
    """Give ``annotator`` a fresh lease on ``sample`` (replacing a skip or an expired one).

    One upsert (INSERT ... ON CONFLICT DO UPDATE) rather than update_or_create's savepoints,
    locking read and insert: this runs on every hand-out. The caller holds the sample's row
    lock, so no other write to this (sample, annotator) pair races it. Sets
    ``sample.lease_expires``.
    """
    expires = now + _lease_duration()
    queue_db.execute(
        f"INSERT INTO {queue_db.table(Lease)}"
        " (sample_id, annotator_id, project_id, expires_at, skipped, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sample_id, annotator_id) DO UPDATE SET"
        " project_id = excluded.project_id, expires_at = excluded.expires_at,"
        " skipped = excluded.skipped, created_at = excluded.created_at",
        [sample.pk, annotator.pk, sample.project_id, queue_db.db_datetime(expires), False,
         queue_db.db_datetime(now)],
    )
    sample.lease_expires = expires


def _first_free_overlap_one(
    *, project: Project, split: str, annotator: AbstractBaseUser, now: dt.datetime
) -> Iterable[Sample]:
    """``_available_to(_queue(...))[:1]`` for overlap 1, in SQL (this is every hand-out):
    the first unlabeled sample of ``split`` in queue order with no lease of the annotator's
    and no live lease of anybody's, locked skipping others' locks where the database can."""
    table, leases = queue_db.table(Sample), queue_db.table(Lease)
    order = "s.random_key" if split == Sample.Split.TEST else "s.score DESC, s.random_key"
    lock = (" FOR UPDATE OF s SKIP LOCKED"
            if connection.features.has_select_for_update_skip_locked else "")
    return Sample.objects.raw(
        f"SELECT s.* FROM {table} s WHERE s.project_id = %s AND s.split = %s AND s.status = %s"
        f" AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.sample_id = s.id"
        " AND l.annotator_id = %s)"
        f" AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.sample_id = s.id"
        " AND l.expires_at > %s AND NOT l.skipped)"
        f" ORDER BY {order} LIMIT 1{lock}",
        [project.pk, split, Sample.Status.UNLABELED, annotator.pk, queue_db.db_datetime(now)],
    )


def _lease_first_free(
    *, project: Project, split: str, annotator: AbstractBaseUser, now: dt.datetime
) -> Sample | None:
    if project.overlap == 1:
        candidates = _first_free_overlap_one(project=project, split=split, annotator=annotator,
                                             now=now)
    else:
        candidates = _available_to(
            _queue(project, split), project=project, annotator=annotator, now=now
        )
        if connection.features.has_select_for_update_skip_locked:
            # Rows another annotator is leasing right now are skipped, not waited for.
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        candidates = candidates[:1]
    for sample in candidates:
        if _still_available(sample.pk, project=project, annotator=annotator, now=now):
            _lease(sample, annotator=annotator, now=now)
            return sample
    return None


def sample_held(*, project: Project, annotator: AbstractBaseUser, now: dt.datetime) -> Sample | None:
    """Return the sample ``annotator`` holds a live lease on, the most recently leased first."""
    # Usually there is none (a submit deletes the lease): a cheap look first.
    if queue_db.fetch_one(
        f"SELECT 1 FROM {queue_db.table(Lease)} WHERE project_id = %s AND annotator_id = %s"
        " AND expires_at > %s AND NOT skipped LIMIT 1",
        [project.pk, annotator.pk, queue_db.db_datetime(now)],
    ) is None:
        return None
    lease = (
        Lease.objects.filter(project=project, annotator_id=annotator.pk, expires_at__gt=now,
                             skipped=False, sample__status=Sample.Status.UNLABELED)
        .exclude(Exists(Label.objects.current().filter(sample_id=OuterRef("sample_id"),
                                                       annotator_id=annotator.pk)))
        .select_related("sample")
        .order_by("-created_at", "-id")
        .first()
    )
    if lease is None:
        return None
    lease.sample.lease_expires = lease.expires_at
    return lease.sample


def sample_lease_next(
    *, project: Project, annotator: AbstractBaseUser, membership: Membership | None = None
) -> Sample | None:
    """Lease and return the next sample for ``annotator``, or None when nothing is left.

    An annotator who already holds a live lease gets that sample back (a reload must not
    burn samples). Otherwise the test split is drawn at random while it is below its share
    of labeled samples, and the pool by descending precomputed uncertainty; no model is
    called here. With overlap k, up to k different annotators hold or label one sample.
    The sample carries its lease's end as ``sample.lease_expires``. ``membership``, the
    annotator's already loaded for this request, saves the role check's query.

    On PostgreSQL with overlap 1 this is one call of ``annotation_lease_next``; the sample
    then has only the fields the labeling page and API show loaded (others load on access).
    """
    member_require(project=project, user=annotator, roles=LABELING_ROLES, membership=membership)
    if queue_db.has_queue_functions() and project.overlap == 1:
        now = timezone.now()
        return queue_db.lease_next_in_database(project=project, annotator=annotator, now=now,
                                               expires=now + _lease_duration())
    return _lease_next(project=project, annotator=annotator)


@transaction.atomic
def _lease_next(*, project: Project, annotator: AbstractBaseUser) -> Sample | None:
    """``sample_lease_next`` after the role check, in the ORM and SQL that every database runs."""
    now = timezone.now()
    held = sample_held(project=project, annotator=annotator, now=now)
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
            if not _available_to(_queue(project, split), project=project, annotator=annotator,
                                 now=now).exists():
                break
    return None


def sample_peek_next(*, project: Project, annotator: AbstractBaseUser) -> Sample | None:
    """Return the sample ``annotator`` would most likely get after their current one.

    Read-only, no lease: the page prefetches its image so a submit shows it at once. Another
    annotator may take it first; then the prefetch was merely wasted.
    """
    now = timezone.now()
    split = Sample.Split.TEST if _wants_test_sample(project) else Sample.Split.POOL
    for candidate_split in (split, Sample.Split.POOL if split == Sample.Split.TEST else Sample.Split.TEST):
        sample = _available_to(
            _queue(project, candidate_split), project=project, annotator=annotator, now=now
        ).first()
        if sample is not None:
            return sample
    return None


def _locked(sample: Sample) -> Sample:
    return Sample.objects.select_for_update().get(pk=sample.pk)


@transaction.atomic
def sample_skip(*, sample: Sample, annotator: AbstractBaseUser) -> None:
    """Give ``sample`` back to the queue for others; it never comes back to ``annotator``."""
    member_require(project=sample.project, user=annotator, roles=LABELING_ROLES)
    sample = _locked(sample)
    now = timezone.now()
    Lease.objects.update_or_create(
        sample=sample, annotator_id=annotator.pk,
        defaults={"project_id": sample.project_id, "expires_at": now, "skipped": True,
                  "created_at": now},
    )


@transaction.atomic
def label_undo_last(*, project: Project, annotator: AbstractBaseUser) -> Sample:
    """Take back ``annotator``'s most recent label in ``project`` and lease its sample to them.

    The label is superseded, not deleted, so history keeps it; the sample goes back to the
    queue (unlabeled again if it had reached the overlap) and is shown to the annotator
    next. Labels already corrected by a scientist cannot be undone.
    """
    member_require(project=project, user=annotator, roles=LABELING_ROLES)
    last = (
        Label.objects.filter(sample__project=project, annotator_id=annotator.pk,
                             is_correction=False)
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None or last.superseded_at is not None:
        raise NothingToUndo("there is no label of yours to undo")
    sample = _locked(last.sample)
    _lease(sample, annotator=annotator, now=timezone.now())
    ledger.label_withdraw(project=project, label=last, sample=sample)
    return sample


