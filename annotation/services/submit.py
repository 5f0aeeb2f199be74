"""An annotator's label for a sample: may the sample take it, then the ledger writes it.

Submitting locks the sample's row first, as every write that changes a sample's leases or
labels does, so leasing, submitting, skipping and undoing one sample serialize. On
PostgreSQL the whole submit is one call of ``annotation_label_submit``, the twin of this
module's checks and the ledger's write (``queue_db``).
"""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotation.access import LABELING_ROLES, member_require
from annotation.errors import SampleNotAvailable, SampleNotFound
from annotation.models import Label, Lease, Membership, Project, Sample
from annotation.services import ledger, queue_db


def label_submit(
    *,
    sample: Sample,
    annotator: AbstractBaseUser,
    value: str,
    duration_ms: int | None = None,
    suggested_version: int | None = None,
    membership: Membership | None = None,
) -> Label:
    """Record ``annotator``'s label for ``sample`` and request a retrain when a batch is full.

    Submitting the same value twice is idempotent: the label already there comes back, with
    ``is_new`` False (True on a label created now). A label is accepted while the annotator
    holds a live lease, or when their lease expired (or they never had one) but the sample
    still has a free place; otherwise SampleNotAvailable (409). A held-out test sample
    takes a label only from an annotator it was leased to (live or expired, not skipped):
    nobody picks test samples by id. The sample becomes labeled
    when it has the project's overlap of labels. The label records the version the project
    serves now and ``suggested_version``, the version whose suggestion the annotator saw
    (None: none shown), as the client says; on a held-out test sample, which is shown no
    suggestion, None whatever it says. A repeat keeps what the first submit recorded.
    Only ``sample.pk`` and ``sample.project``
    are read from ``sample``: the row is loaded here, locked, and must belong to that
    project (else SampleNotFound), so callers need not load it first. ``membership``, the
    annotator's already loaded for this request, saves the role check's query.

    On PostgreSQL the label is written by one call of ``annotation_label_submit``; outside
    a transaction the retrain-due check then runs after its commit.
    """
    project = sample.project
    member_require(project=project, user=annotator, roles=LABELING_ROLES, membership=membership)
    ledger.label_check(project=project, value=value)
    if queue_db.has_queue_functions() and _is_bigint(sample.pk):
        label = _label_submit_in_database(project=project, sample_id=sample.pk,
                                          annotator=annotator, value=value,
                                          duration_ms=duration_ms,
                                          suggested_version=suggested_version)
        if label is not None:
            return label
    return _label_submit(project=project, sample_id=sample.pk, annotator=annotator,
                         value=value, duration_ms=duration_ms,
                         suggested_version=suggested_version)


def _is_bigint(value: object) -> bool:
    """Whether the function's bigint parameter takes ``value``; the Python path answers
    other ids (a 404, as the column compares with any number)."""
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _label_submit_in_database(
    *, project: Project, sample_id: int, annotator: AbstractBaseUser, value: str,
    duration_ms: int | None, suggested_version: int | None,
) -> Label | None:
    """``_label_submit`` in one statement; None when it wrote nothing because the project
    has no counter row yet (the Python path makes one)."""
    outcome, label_id, label_value, label_duration_ms, created_at, is_correction, \
        served, suggested, current, counted_from = queue_db.label_submit_in_database(
            project=project, sample_id=sample_id, annotator=annotator, value=value,
            duration_ms=duration_ms, suggested_version=suggested_version, now=timezone.now(),
        )
    if outcome == "no_counts":
        return None
    if outcome == "not_found":
        raise _sample_not_found(sample_id)
    if outcome == "already_labeled":
        raise _sample_labeled(sample_id)
    if outcome == "not_given":
        raise _sample_not_given(sample_id)
    if outcome == "leased":
        raise _sample_leased(sample_id)
    if outcome == "existing" and label_value != value:
        raise _labeled_otherwise(sample_id, label_value)
    label = Label(id=label_id, sample_id=sample_id, annotator=annotator, value=label_value,
                  duration_ms=label_duration_ms, created_at=created_at, superseded_at=None,
                  is_correction=is_correction, served_version=served,
                  suggested_version=suggested)
    label._state.adding, label._state.db = False, connection.alias
    label.is_new = outcome == "created"
    if label.is_new:
        ledger.retrain_if_due(project=project, label_count=current, counted_from=counted_from)
    return label


def _sample_not_found(sample_id: int) -> SampleNotFound:
    return SampleNotFound("that sample is not part of this project", detail={"sample": sample_id})


def _sample_labeled(sample_id: int) -> SampleNotAvailable:
    return SampleNotAvailable("this sample is already labeled", detail={"sample": sample_id})


def _sample_not_given(sample_id: int) -> SampleNotAvailable:
    return SampleNotAvailable(
        "this held-out test sample was not given to you; ask the queue for your next sample",
        detail={"sample": sample_id},
    )


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
    duration_ms: int | None, suggested_version: int | None,
) -> Label:
    """``label_submit`` after the role and value checks, in the ORM and SQL that every
    database runs."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    row = queue_db.fetch_one(
        f"SELECT split, status, label_count FROM {queue_db.table(Sample)}"
        f" WHERE id = %s AND project_id = %s{lock}",
        [sample_id, project.pk],
    )
    if row is None:
        raise _sample_not_found(sample_id)
    split, sample_status, label_count = row
    now = queue_db.db_datetime(timezone.now())
    leases = queue_db.table(Lease)
    # A statement after the lock: it sees labels and leases committed while we waited.
    my_label_id, live_leases, my_live_leases, my_leases = queue_db.fetch_one(
        f"SELECT (SELECT id FROM {queue_db.table(Label)} WHERE sample_id = %s"
        " AND annotator_id = %s AND superseded_at IS NULL),"
        f" (SELECT COUNT(*) FROM {leases} WHERE sample_id = %s AND expires_at > %s"
        " AND NOT skipped),"
        f" (SELECT COUNT(*) FROM {leases} WHERE sample_id = %s AND annotator_id = %s"
        " AND expires_at > %s AND NOT skipped),"
        f" (SELECT COUNT(*) FROM {leases} WHERE sample_id = %s AND annotator_id = %s"
        " AND NOT skipped)",
        [sample_id, annotator.pk, sample_id, now, sample_id, annotator.pk, now,
         sample_id, annotator.pk],
    )
    if my_label_id is not None:
        existing = Label.objects.get(pk=my_label_id)
        if existing.value == value:
            existing.is_new = False
            return existing
        raise _labeled_otherwise(sample_id, existing.value)
    if sample_status == Sample.Status.LABELED:
        raise _sample_labeled(sample_id)
    if split == Sample.Split.TEST and not my_leases:
        raise _sample_not_given(sample_id)  # held-out samples come only from the queue
    if not my_live_leases and label_count + live_leases >= project.overlap:
        raise _sample_leased(sample_id)
    # The lease ends with the label; the ledger's counter update must come last.
    queue_db.execute(f"DELETE FROM {leases} WHERE sample_id = %s AND annotator_id = %s",
                     [sample_id, annotator.pk])
    return ledger.label_add(project=project, sample_id=sample_id, split=split,
                            label_count=label_count, annotator=annotator, value=value,
                            duration_ms=duration_ms, suggested_version=suggested_version)
