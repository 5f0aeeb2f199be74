"""Writes of the labeling queue: leases, labels, skips, undo and precomputed scores.

Every write that changes a sample's leases or labels first locks that sample's row, so
leasing, submitting, skipping and undoing one sample serialize; different samples never
wait on each other (PostgreSQL skips rows another annotator is leasing right now).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.errors import InvalidLabel, NothingToUndo, SampleNotAvailable, SampleNotFound
from annotation.models import Label, LabelCounts, Lease, Project, Sample
from annotation.selectors import project_sample_total_forget
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
    counts = LabelCounts.objects.filter(project=project).values_list(
        "labeled_pool", "labeled_test"
    ).first() or (0, 0)
    pool, test = counts
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
        return not Lease.objects.filter(
            Q(annotator_id=annotator.pk) | Q(expires_at__gt=now, skipped=False),
            sample_id=sample_id,
        ).exists()
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
    Lease.objects.bulk_create(
        [Lease(sample_id=sample.pk, annotator_id=annotator.pk, project_id=sample.project_id,
               expires_at=expires, skipped=False, created_at=now)],
        update_conflicts=True, unique_fields=["sample", "annotator"],
        update_fields=["project", "expires_at", "skipped", "created_at"],
    )
    sample.lease_expires = expires


def _lease_first_free(
    *, project: Project, split: str, annotator: AbstractBaseUser, now: dt.datetime
) -> Sample | None:
    candidates = _available_to(_queue(project, split), project=project, annotator=annotator, now=now)
    if connection.features.has_select_for_update_skip_locked:
        # Rows another annotator is leasing right now are skipped, not waited for.
        candidates = candidates.select_for_update(skip_locked=True, of=("self",))
    for sample in candidates[:1]:
        if _still_available(sample.pk, project=project, annotator=annotator, now=now):
            _lease(sample, annotator=annotator, now=now)
            return sample
    return None


def sample_held(*, project: Project, annotator: AbstractBaseUser, now: dt.datetime) -> Sample | None:
    """Return the sample ``annotator`` holds a live lease on, the most recently leased first."""
    live = Lease.objects.filter(project=project, annotator_id=annotator.pk, expires_at__gt=now,
                                skipped=False)
    # Usually there is none (a submit deletes the lease): a cheap look first.
    if not live.exists():
        return None
    lease = (
        live.filter(sample__status=Sample.Status.UNLABELED)
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
def sample_lease_next(*, project: Project, annotator: AbstractBaseUser) -> Sample | None:
    """Lease and return the next sample for ``annotator``, or None when nothing is left.

    An annotator who already holds a live lease gets that sample back (a reload must not
    burn samples). Otherwise the test split is drawn at random while it is below its share
    of labeled samples, and the pool by descending precomputed uncertainty; no model is
    called here. With overlap k, up to k different annotators hold or label one sample.
    The sample carries its lease's end as ``sample.lease_expires``.
    """
    member_require(project=project, user=annotator, roles=LABELING_ROLES)
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
) -> Label:
    """Record ``annotator``'s label for ``sample`` and request a retrain when a batch is full.

    Submitting the same value twice is idempotent: the label already there comes back, with
    ``is_new`` False (True on a label created now). A label is accepted while the annotator
    holds a live lease, or when their lease expired (or they never had one) but the sample
    still has a free place; otherwise SampleNotAvailable (409). The sample becomes labeled
    when it has the project's overlap of labels. Only ``sample.pk`` and ``sample.project``
    are read from ``sample``: the row is loaded here, locked, and must belong to that
    project (else SampleNotFound), so callers need not load it first.
    """
    project = sample.project
    member_require(project=project, user=annotator, roles=LABELING_ROLES)
    if value not in project.labels:
        raise InvalidLabel(
            f"{value!r} is not a label of project {project.slug!r}", detail=project.labels
        )
    locked = Sample.objects.select_for_update().filter(pk=sample.pk, project_id=project.pk).first()
    if locked is None:
        raise SampleNotFound("that sample is not part of this project", detail={"sample": sample.pk})
    sample = locked
    existing = Label.objects.current().filter(sample=sample, annotator_id=annotator.pk).first()
    if existing is not None:
        if existing.value == value:
            existing.is_new = False
            return existing
        raise SampleNotAvailable(
            "you already labeled this sample with another value; undo it first",
            detail={"sample": sample.pk, "value": existing.value},
        )
    if sample.status == Sample.Status.LABELED:
        raise SampleNotAvailable("this sample is already labeled", detail={"sample": sample.pk})
    now = timezone.now()
    leases = Lease.objects.filter(sample=sample, expires_at__gt=now, skipped=False)
    holds = leases.filter(annotator_id=annotator.pk).exists()
    if not holds and sample.label_count + leases.count() >= project.overlap:
        raise SampleNotAvailable(
            "this sample is leased by another annotator", detail={"sample": sample.pk}
        )
    label = Label.objects.create(
        sample=sample, annotator=annotator, value=value, duration_ms=duration_ms
    )
    label.is_new = True
    count = sample.label_count + 1
    done = count >= project.overlap
    status = Sample.Status.LABELED if done else Sample.Status.UNLABELED
    Sample.objects.filter(pk=sample.pk).update(label_count=count, status=status)
    Lease.objects.filter(sample=sample, annotator_id=annotator.pk).delete()
    current_labels = label_counts_add(project_id=project.pk, current_labels=1,
                                      **(_labeled_delta(sample.split, 1) if done else {}))
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
