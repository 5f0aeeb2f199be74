"""Writes of the labeling queue: leases, labels, skips, undo and precomputed scores.

Every write that changes a sample's leases or labels first locks that sample's row, so
leasing, submitting, skipping and undoing one sample serialize; different samples never
wait on each other (PostgreSQL skips rows another annotator is leasing right now).

The small statements run on every hand-out and submit are written in SQL (PostgreSQL and
SQLite alike): building one through the ORM costs several times the CPU of running it,
and the API spends most of its time on them.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.errors import InvalidLabel, NothingToUndo, SampleNotAvailable, SampleNotFound
from annotation.models import Label, LabelCounts, Lease, Membership, Project, Sample
from annotation.selectors import project_sample_total_forget
from annotation.services.projects import LABELING_ROLES, member_require


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _db_datetime(value: dt.datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _fetch_one(sql: str, params: Sequence) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _execute(sql: str, params: Sequence) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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
    project_sample_total_forget(project_id=project.pk)
    return created


def _lease_duration() -> dt.timedelta:
    return dt.timedelta(seconds=settings.LEASE_SECONDS)


def _label_counts_update(project_id: int, changes: dict[str, int]) -> int | None:
    """Apply ``changes`` in one statement; return the new current_labels, None if no row."""
    table = connection.ops.quote_name(LabelCounts._meta.db_table)
    assignments = ", ".join(f"{name} = {name} + %s" for name in changes)
    with connection.cursor() as cursor:  # UPDATE ... RETURNING: PostgreSQL, SQLite >= 3.35
        cursor.execute(
            f"UPDATE {table} SET {assignments} WHERE project_id = %s RETURNING current_labels",
            [*changes.values(), project_id],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


def label_counts_add(
    *, project_id: int, labeled_pool: int = 0, labeled_test: int = 0, current_labels: int = 0
) -> int | None:
    """Add to a project's running label counts; call inside the transaction that wrote the labels.

    Returns the project's current labels after the change (None when nothing changed).
    Call it last in the transaction: on PostgreSQL the counter row stays locked until
    commit, so everything after it lengthens the queue of concurrent label writers.
    """
    changes = {
        name: delta
        for name, delta in (("labeled_pool", labeled_pool), ("labeled_test", labeled_test),
                            ("current_labels", current_labels))
        if delta
    }
    if not changes:
        return None
    current = _label_counts_update(project_id, changes)
    if current is not None:
        return current
    # No counter row yet: count once, with the project locked so concurrent first writers
    # queue here; the count already includes this transaction's own writes.
    Project.objects.select_for_update().filter(pk=project_id).first()
    current = _label_counts_update(project_id, changes)
    if current is not None:
        return current
    return label_counts_rebuild(project_id=project_id).current_labels


@transaction.atomic
def label_counts_rebuild(*, project_id: int) -> LabelCounts:
    """Recount a project's labeled samples and current labels from its rows (a repair)."""
    labeled = Sample.objects.filter(project_id=project_id).labeled()
    counts, _ = LabelCounts.objects.update_or_create(
        project_id=project_id,
        defaults={
            "labeled_pool": labeled.in_pool().count(),
            "labeled_test": labeled.in_test().count(),
            "current_labels": Label.objects.current().filter(sample__project_id=project_id).count(),
        },
    )
    return counts


def _labeled_delta(split: str, delta: int) -> dict[str, int]:
    return {"labeled_test" if split == Sample.Split.TEST else "labeled_pool": delta}


def _wants_test_sample(project: Project) -> bool:
    """Keep the labeled test split at ``test_fraction`` of all labeled samples, drawn at random.

    Reads the running counts, never counts rows: this is on every hand-out.
    """
    counts = _fetch_one(
        f"SELECT labeled_pool, labeled_test FROM {_table(LabelCounts)} WHERE project_id = %s",
        [project.pk],
    )
    pool, test = counts or (0, 0)
    return test < project.test_fraction * (pool + test + 1)


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
        return _fetch_one(
            f"SELECT 1 FROM {_table(Lease)} WHERE sample_id = %s"
            " AND (annotator_id = %s OR (expires_at > %s AND NOT skipped)) LIMIT 1",
            [sample_id, annotator.pk, _db_datetime(now)],
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
    _execute(
        f"INSERT INTO {_table(Lease)}"
        " (sample_id, annotator_id, project_id, expires_at, skipped, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sample_id, annotator_id) DO UPDATE SET"
        " project_id = excluded.project_id, expires_at = excluded.expires_at,"
        " skipped = excluded.skipped, created_at = excluded.created_at",
        [sample.pk, annotator.pk, sample.project_id, _db_datetime(expires), False,
         _db_datetime(now)],
    )
    sample.lease_expires = expires


def _first_free_overlap_one(
    *, project: Project, split: str, annotator: AbstractBaseUser, now: dt.datetime
) -> Iterable[Sample]:
    """``_available_to(_queue(...))[:1]`` for overlap 1, in SQL (this is every hand-out):
    the first unlabeled sample of ``split`` in queue order with no lease of the annotator's
    and no live lease of anybody's, locked skipping others' locks where the database can."""
    table, leases = _table(Sample), _table(Lease)
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
        [project.pk, split, Sample.Status.UNLABELED, annotator.pk, _db_datetime(now)],
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
    if _fetch_one(
        f"SELECT 1 FROM {_table(Lease)} WHERE project_id = %s AND annotator_id = %s"
        " AND expires_at > %s AND NOT skipped LIMIT 1",
        [project.pk, annotator.pk, _db_datetime(now)],
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


@transaction.atomic
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
    """
    member_require(project=project, user=annotator, roles=LABELING_ROLES, membership=membership)
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
def label_submit(
    *,
    sample: Sample,
    annotator: AbstractBaseUser,
    value: str,
    duration_ms: int | None = None,
    membership: Membership | None = None,
) -> Label:
    """Record ``annotator``'s label for ``sample`` and request a retrain when a batch is full.

    Submitting the same value twice is idempotent: the label already there comes back, with
    ``is_new`` False (True on a label created now). A label is accepted while the annotator
    holds a live lease, or when their lease expired (or they never had one) but the sample
    still has a free place; otherwise SampleNotAvailable (409). The sample becomes labeled
    when it has the project's overlap of labels. Only ``sample.pk`` and ``sample.project``
    are read from ``sample``: the row is loaded here, locked, and must belong to that
    project (else SampleNotFound), so callers need not load it first. ``membership``, the
    annotator's already loaded for this request, saves the role check's query.
    """
    project = sample.project
    member_require(project=project, user=annotator, roles=LABELING_ROLES, membership=membership)
    if value not in project.labels:
        raise InvalidLabel(
            f"{value!r} is not a label of project {project.slug!r}", detail=project.labels
        )
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    row = _fetch_one(
        f"SELECT split, status, label_count FROM {_table(Sample)}"
        f" WHERE id = %s AND project_id = %s{lock}",
        [sample.pk, project.pk],
    )
    if row is None:
        raise SampleNotFound("that sample is not part of this project", detail={"sample": sample.pk})
    split, sample_status, label_count = row
    now = timezone.now()
    # A statement after the lock: it sees labels and leases committed while we waited.
    my_label_id, live_leases, my_live_leases = _fetch_one(
        f"SELECT (SELECT id FROM {_table(Label)} WHERE sample_id = %s AND annotator_id = %s"
        " AND superseded_at IS NULL),"
        f" (SELECT COUNT(*) FROM {_table(Lease)} WHERE sample_id = %s AND expires_at > %s"
        " AND NOT skipped),"
        f" (SELECT COUNT(*) FROM {_table(Lease)} WHERE sample_id = %s AND annotator_id = %s"
        " AND expires_at > %s AND NOT skipped)",
        [sample.pk, annotator.pk, sample.pk, _db_datetime(now), sample.pk, annotator.pk,
         _db_datetime(now)],
    )
    if my_label_id is not None:
        existing = Label.objects.get(pk=my_label_id)
        if existing.value == value:
            existing.is_new = False
            return existing
        raise SampleNotAvailable(
            "you already labeled this sample with another value; undo it first",
            detail={"sample": sample.pk, "value": existing.value},
        )
    if sample_status == Sample.Status.LABELED:
        raise SampleNotAvailable("this sample is already labeled", detail={"sample": sample.pk})
    if not my_live_leases and label_count + live_leases >= project.overlap:
        raise SampleNotAvailable(
            "this sample is leased by another annotator", detail={"sample": sample.pk}
        )
    label = Label.objects.create(
        sample_id=sample.pk, annotator=annotator, value=value, duration_ms=duration_ms
    )
    label.is_new = True
    count = label_count + 1
    done = count >= project.overlap
    _execute(
        f"UPDATE {_table(Sample)} SET label_count = %s, status = %s WHERE id = %s",
        [count, Sample.Status.LABELED if done else Sample.Status.UNLABELED, sample.pk],
    )
    _execute(f"DELETE FROM {_table(Lease)} WHERE sample_id = %s AND annotator_id = %s",
             [sample.pk, annotator.pk])
    current_labels = label_counts_add(project_id=project.pk, current_labels=1,
                                      **(_labeled_delta(split, 1) if done else {}))
    from learning.services import model_version_request_if_due  # learning depends on us

    # The new count comes back from the counter update: the check reads no counter row
    # while this transaction holds it locked.
    model_version_request_if_due(project=project, label_count=current_labels)
    return label


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
    now = timezone.now()
    Label.objects.filter(pk=last.pk).update(superseded_at=now)
    was_labeled = sample.status == Sample.Status.LABELED
    Sample.objects.filter(pk=sample.pk).update(
        label_count=max(sample.label_count - 1, 0), status=Sample.Status.UNLABELED
    )
    sample.label_count, sample.status = max(sample.label_count - 1, 0), Sample.Status.UNLABELED
    _lease(sample, annotator=annotator, now=now)
    label_counts_add(project_id=project.pk, current_labels=-1,
                     **(_labeled_delta(sample.split, -1) if was_labeled else {}))
    return sample


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
