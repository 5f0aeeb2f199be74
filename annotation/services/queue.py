"""Writes of the labeling queue: leases, labels, skips, undo and precomputed scores.

Every write that changes a sample's leases or labels first locks that sample's row, so
leasing, submitting, skipping and undoing one sample serialize; different samples never
wait on each other (PostgreSQL skips rows another annotator is leasing right now).

The small statements run on every hand-out and submit are written in SQL (PostgreSQL and
SQLite alike): building one through the ORM costs several times the CPU of running it,
and the API spends most of its time on them. On PostgreSQL the hand-out (overlap 1) and
the submit are one round trip each: PL/pgSQL functions (``annotation.queue_functions_sql``)
that mirror the Python path here, which stays the specification and SQLite's path.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence

import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation import hooks
from annotation.errors import InvalidLabel, NothingToUndo, SampleNotAvailable, SampleNotFound
from annotation.models import Label, LabelCounts, Lease, Membership, Project, Sample
from annotation.selectors import project_sample_total_forget
from annotation.access import LABELING_ROLES, member_require


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
    Project.objects.select_for_update(no_key=True).filter(pk=project_id).first()
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
    if _has_queue_functions() and project.overlap == 1:
        return _lease_next_in_database(project=project, annotator=annotator)
    return _lease_next(project=project, annotator=annotator)


def _has_queue_functions() -> bool:
    """Whether migration 0005 created the PL/pgSQL queue functions on this database."""
    return connection.vendor == "postgresql"


def _lease_next_in_database(*, project: Project, annotator: AbstractBaseUser) -> Sample | None:
    """``_lease_next`` for overlap 1 in one statement, atomic on its own.

    Outside a transaction its commit is asynchronous (a lease is not a label); never inside
    one, whose own writes it would make asynchronous too.
    """
    now = timezone.now()
    asynchronous = connection.get_autocommit() and not connection.in_atomic_block
    row = _call_queue_function(
        "SELECT * FROM annotation_lease_next(%s::bigint, %s::integer, %s::double precision,"
        " %s::timestamptz, %s::timestamptz, %s::boolean)",
        [project.pk, annotator.pk, project.test_fraction, now, now + _lease_duration(),
         asynchronous],
    )
    if row is None:
        return None
    *columns, lease_expires = row
    loaded = dict(zip(_LEASED_COLUMNS, columns))
    loaded["values"] = _VALUES_FIELD.from_db_value(loaded["values"], None, connection)
    sample = Sample.from_db(connection.alias, _LEASED_FIELDS,
                            [loaded[name] for name in _LEASED_FIELDS])
    sample.lease_expires = lease_expires
    return sample


# What annotation_lease_next returns of the sample, and the same in the model's field
# order, which Model.from_db wants.
_LEASED_COLUMNS = ("id", "project_id", "external_id", "text", "values", "image", "split")
_LEASED_FIELDS = [f.attname for f in Sample._meta.concrete_fields if f.attname in _LEASED_COLUMNS]
_VALUES_FIELD = Sample._meta.get_field("values")


def _call_queue_function(sql: str, params: Sequence) -> tuple | None:
    """Run one of the queue functions on Django's connection and return its row.

    Straight on the psycopg connection with server-side binding: Django's cursor quotes
    every parameter into the SQL text on the client and wraps each call, which cost more
    CPU than the call itself on every hand-out and submit. Django's transaction state
    holds (same connection), database errors become Django's, and the call is logged
    wherever Django logs queries (DEBUG, tests).
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if connection.queries_logged:
        shown = psycopg.ClientCursor(connection.connection).mogrify(sql, params)
        connection.queries_log.append(
            {"sql": shown, "time": f"{time.monotonic() - started:.3f}"})
    return row


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

    On PostgreSQL the label is written by one call of ``annotation_label_submit``; outside
    a transaction the retrain-due check then runs after its commit.
    """
    project = sample.project
    member_require(project=project, user=annotator, roles=LABELING_ROLES, membership=membership)
    if value not in project.labels:
        raise InvalidLabel(
            f"{value!r} is not a label of project {project.slug!r}", detail=project.labels
        )
    if _has_queue_functions() and _is_bigint(sample.pk):
        label = _label_submit_in_database(project=project, sample_id=sample.pk,
                                          annotator=annotator, value=value,
                                          duration_ms=duration_ms)
        if label is not None:
            return label
    return _label_submit(project=project, sample_id=sample.pk, annotator=annotator,
                         value=value, duration_ms=duration_ms)


def _is_bigint(value: object) -> bool:
    """Whether the function's bigint parameter takes ``value``; the Python path answers
    other ids (a 404, as the column compares with any number)."""
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _label_submit_in_database(
    *, project: Project, sample_id: int, annotator: AbstractBaseUser, value: str,
    duration_ms: int | None,
) -> Label | None:
    """``_label_submit`` in one statement; None when it wrote nothing because the project
    has no counter row yet (the Python path makes one)."""
    outcome, label_id, label_value, label_duration_ms, created_at, is_correction, current, \
        counted_from = _call_queue_function(
            "SELECT * FROM annotation_label_submit(%s::bigint, %s::bigint, %s::integer,"
            " %s::varchar, %s::integer, %s::integer, %s::timestamptz)",
            [project.pk, sample_id, annotator.pk, value, duration_ms, project.overlap,
             timezone.now()],
        )
    if outcome == "no_counts":
        return None
    if outcome == "not_found":
        raise _sample_not_found(sample_id)
    if outcome == "already_labeled":
        raise _sample_labeled(sample_id)
    if outcome == "leased":
        raise _sample_leased(sample_id)
    if outcome == "existing" and label_value != value:
        raise _labeled_otherwise(sample_id, label_value)
    label = Label(id=label_id, sample_id=sample_id, annotator=annotator, value=label_value,
                  duration_ms=label_duration_ms, created_at=created_at, superseded_at=None,
                  is_correction=is_correction)
    label._state.adding, label._state.db = False, connection.alias
    label.is_new = outcome == "created"
    if label.is_new:
        hooks.labels_added(project=project, label_count=current, counted_from=counted_from)
    return label


def _sample_not_found(sample_id: int) -> SampleNotFound:
    return SampleNotFound("that sample is not part of this project", detail={"sample": sample_id})


def _sample_labeled(sample_id: int) -> SampleNotAvailable:
    return SampleNotAvailable("this sample is already labeled", detail={"sample": sample_id})


def _sample_leased(sample_id: int) -> SampleNotAvailable:
    return SampleNotAvailable(
        "this sample is leased by another annotator", detail={"sample": sample_id}
    )


def _labeled_otherwise(sample_id: int, value: str) -> SampleNotAvailable:
    return SampleNotAvailable(
        "you already labeled this sample with another value; undo it first",
        detail={"sample": sample_id, "value": value},
    )


@transaction.atomic
def _label_submit(
    *, project: Project, sample_id: int, annotator: AbstractBaseUser, value: str,
    duration_ms: int | None,
) -> Label:
    """``label_submit`` after the role and value checks, in the ORM and SQL that every
    database runs."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    row = _fetch_one(
        f"SELECT split, status, label_count FROM {_table(Sample)}"
        f" WHERE id = %s AND project_id = %s{lock}",
        [sample_id, project.pk],
    )
    if row is None:
        raise _sample_not_found(sample_id)
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
        [sample_id, annotator.pk, sample_id, _db_datetime(now), sample_id, annotator.pk,
         _db_datetime(now)],
    )
    if my_label_id is not None:
        existing = Label.objects.get(pk=my_label_id)
        if existing.value == value:
            existing.is_new = False
            return existing
        raise _labeled_otherwise(sample_id, existing.value)
    if sample_status == Sample.Status.LABELED:
        raise _sample_labeled(sample_id)
    if not my_live_leases and label_count + live_leases >= project.overlap:
        raise _sample_leased(sample_id)
    label = Label.objects.create(
        sample_id=sample_id, annotator=annotator, value=value, duration_ms=duration_ms
    )
    label.is_new = True
    count = label_count + 1
    done = count >= project.overlap
    _execute(
        f"UPDATE {_table(Sample)} SET label_count = %s, status = %s WHERE id = %s",
        [count, Sample.Status.LABELED if done else Sample.Status.UNLABELED, sample_id],
    )
    _execute(f"DELETE FROM {_table(Lease)} WHERE sample_id = %s AND annotator_id = %s",
             [sample_id, annotator.pk])
    current_labels = label_counts_add(project_id=project.pk, current_labels=1,
                                      **(_labeled_delta(split, 1) if done else {}))
    # The new count comes back from the counter update: the check reads no counter row
    # while this transaction holds it locked.
    hooks.labels_added(project=project, label_count=current_labels)
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
