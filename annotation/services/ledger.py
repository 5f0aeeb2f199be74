"""The label ledger: the one writer of labels, their samples' status, the counts and the retrain trigger.

Every label write goes through a function here: a submit from the labeling page, the
labeling API or its fast path (``submit.label_submit``), an undo (``leases``), a
scientist's correction (``review``), an import (``imports``), production feedback
(``production``, and serving's feedback through it); and every writer checks a value with
:func:`label_check`, which has the one error shape. The ledger keeps four things in step
inside the writer's transaction:

- the label rows (a label is superseded, never deleted, except with an import undone),
  each with its provenance: ``served_version``, the number of the model version the
  project serves as the row is written (:func:`served_version`), on every label written
  here; and on an annotator's label (:func:`label_add`) ``suggested_version``, the version
  whose suggestion the annotator saw, as their page or tool says (never on a held-out
  test sample, which is shown none);
- each sample's ``label_count`` and ``status`` (labeled at the project's overlap, or at
  once when its label settles it: an import, production feedback, a correction);
- the project's running ``LabelCounts``, written last (on PostgreSQL the counter row stays
  locked until commit, so everything after it lengthens the queue of label writers);
- the retrain-due check, :func:`retrain_if_due`, the one caller of ``hooks.labels_added``.

An import alone streams its new samples and label rows itself (COPY or one prepared
statement per batch: a million rows cannot go through per-label calls), taking each new
sample's state from :func:`new_sample_state` and counting through :func:`label_counts_add`.
Its label rows record no versions: they were given outside this service, under no model
of its.

On PostgreSQL the submit's hot path writes through the ledger's database twin instead:
``annotation_label_submit`` (``annotation.queue_functions_sql``) does what
:func:`label_add` does (label row with its served version, sample status, counts) in one
round trip and returns what the retrain check needs. Its text mirrors this module,
statement for statement: change one, change the other;
tests/annotation/test_queue_functions.py holds the two to the same outcomes, and
tests/annotation/test_ledger.py fails if another module writes the counts or calls the
trigger.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from annotation import hooks
from annotation.errors import InvalidLabel
from annotation.models import Label, LabelCounts, Project, Sample
from annotation.services import queue_db


def label_check(*, project: Project, value: str) -> None:
    """Raise InvalidLabel unless ``value`` is one of ``project``'s labels."""
    if value not in project.labels:
        raise InvalidLabel(f"{value!r} is not a label of project {project.slug!r}",
                           detail={"value": value, "labels": list(project.labels)})


def new_sample_state(*, labeled: bool) -> tuple[str, int]:
    """(status, label_count) of a sample created with its label (which settles it, whatever
    the overlap: an import's, production feedback's) or without one."""
    return (Sample.Status.LABELED, 1) if labeled else (Sample.Status.UNLABELED, 0)


def served_version(*, project: Project) -> int | None:
    """The number of the version ``project`` serves now (None before any model): the
    ``served_model`` hook, one query."""
    served = hooks.served_model(project=project)
    return None if served is None else served.number


def retrain_if_due(*, project: Project, label_count: int | None = None,
                   counted_from: int | None = None) -> None:
    """Labels were added in this transaction: queue a retrain if a batch is full.

    ``label_count`` is the running count after the write, when the writer has it (the
    counter update returns it; the check then reads no counter row while this transaction
    holds it locked); ``counted_from`` where the current batch began, when it was read.
    """
    hooks.labels_added(project=project, label_count=label_count, counted_from=counted_from)


def label_add(*, project: Project, sample_id: int, split: str, label_count: int,
              annotator: AbstractBaseUser, value: str, duration_ms: int | None,
              suggested_version: int | None = None) -> Label:
    """Add ``annotator``'s label to a sample that had ``label_count`` labels; the caller
    holds the sample's row lock and checked that the sample takes the label.

    ``suggested_version`` is the version whose suggestion the annotator was shown, as their
    client says; a held-out test sample is never shown one, so it records None there. The
    sample becomes labeled at the project's overlap. Returns the label, ``is_new``.
    """
    label = Label.objects.create(
        sample_id=sample_id, annotator=annotator, value=value, duration_ms=duration_ms,
        served_version=served_version(project=project),
        suggested_version=None if split == Sample.Split.TEST else suggested_version,
    )
    label.is_new = True
    count = label_count + 1
    done = count >= project.overlap
    queue_db.execute(
        f"UPDATE {queue_db.table(Sample)} SET label_count = %s, status = %s WHERE id = %s",
        [count, Sample.Status.LABELED if done else Sample.Status.UNLABELED, sample_id],
    )
    current_labels = label_counts_add(project_id=project.pk, current_labels=1,
                                      **(_labeled_delta(split, 1) if done else {}))
    retrain_if_due(project=project, label_count=current_labels)
    return label


@transaction.atomic
def label_add_with_sample(*, project: Project, sample: Sample, annotator: AbstractBaseUser,
                          value: str) -> Label:
    """Save the new ``sample`` labeled by its one label ``value`` and count it."""
    sample.status, sample.label_count = new_sample_state(labeled=True)
    sample.save()
    label = Label.objects.create(sample=sample, annotator=annotator, value=value,
                                 served_version=served_version(project=project))
    # Counters first: the retrain check reads them and must see this label.
    label_count = label_counts_add(project_id=project.pk, current_labels=1,
                                   **_labeled_delta(sample.split, 1))
    retrain_if_due(project=project, label_count=label_count)
    return label


def label_withdraw(*, project: Project, label: Label, sample: Sample) -> None:
    """Supersede ``label`` (an undo): its sample, locked by the caller, is unlabeled again.

    ``sample``'s ``label_count`` and ``status`` are updated in place too.
    """
    Label.objects.filter(pk=label.pk).update(superseded_at=timezone.now())
    was_labeled = sample.status == Sample.Status.LABELED
    sample.label_count, sample.status = max(sample.label_count - 1, 0), Sample.Status.UNLABELED
    Sample.objects.filter(pk=sample.pk).update(label_count=sample.label_count,
                                               status=sample.status)
    label_counts_add(project_id=project.pk, current_labels=-1,
                     **(_labeled_delta(sample.split, -1) if was_labeled else {}))


def correction_add(*, project: Project, sample: Sample, current: Sequence[Label],
                   scientist: AbstractBaseUser, value: str) -> Label:
    """Supersede every ``current`` label of ``sample`` (locked by the caller) by one
    correction of ``scientist``'s, which settles the sample whatever the overlap."""
    Label.objects.filter(pk__in=[label.pk for label in current]).update(
        superseded_at=timezone.now())
    label = Label.objects.create(sample=sample, annotator=scientist, value=value,
                                 is_correction=True,
                                 served_version=served_version(project=project))
    newly_labeled = sample.status != Sample.Status.LABELED
    Sample.objects.filter(pk=sample.pk).update(status=Sample.Status.LABELED, label_count=1)
    label_counts_add(project_id=project.pk, current_labels=1 - len(current),
                     **(_labeled_delta(sample.split, 1) if newly_labeled else {}))
    return label


@transaction.atomic
def label_replace(*, project: Project, sample_id: int, annotator_id: int, value: str) -> Label:
    """Make ``value`` the current label of ``annotator_id`` for a sample, superseding theirs.

    The same value again is a no-op that returns the current label.
    """
    current = (
        Label.objects.current().select_for_update()
        .filter(sample_id=sample_id, annotator_id=annotator_id).first()
    )
    if current is not None and current.value == value:
        return current
    if current is not None:
        Label.objects.filter(pk=current.pk).update(superseded_at=timezone.now())
    replaced = Label.objects.create(sample_id=sample_id, annotator_id=annotator_id, value=value,
                                    served_version=served_version(project=project))
    if current is None:  # no current label was replaced: one more current label
        label_counts_add(project_id=project.pk, current_labels=1)
    return replaced


def samples_complete(*, project: Project, overlap: int) -> None:
    """Mark samples that already have ``overlap`` labels labeled (the overlap went down)."""
    done = Sample.objects.filter(project=project).unlabeled().filter(label_count__gte=overlap)
    by_split = _count_by_split(done)
    done.update(status=Sample.Status.LABELED)
    label_counts_add(project_id=project.pk, labeled_pool=by_split.get(Sample.Split.POOL, 0),
                     labeled_test=by_split.get(Sample.Split.TEST, 0))


@transaction.atomic
def samples_delete(*, project_id: int, sample_ids: Sequence[int]) -> None:
    """Delete samples with every label they had (an import undone) and uncount them."""
    labeled = _count_by_split(Sample.objects.filter(pk__in=sample_ids).labeled())
    labels, _ = Label.objects.filter(sample_id__in=sample_ids, superseded_at__isnull=True).delete()
    Label.objects.filter(sample_id__in=sample_ids).delete()
    Sample.objects.filter(pk__in=sample_ids).delete()
    label_counts_add(project_id=project_id, current_labels=-labels,
                     labeled_pool=-labeled.get(Sample.Split.POOL, 0),
                     labeled_test=-labeled.get(Sample.Split.TEST, 0))


def _count_by_split(samples) -> dict[str, int]:
    return dict(samples.order_by().values("split").annotate(n=Count("pk"))
                .values_list("split", "n"))


def _labeled_delta(split: str, delta: int) -> dict[str, int]:
    return {"labeled_test" if split == Sample.Split.TEST else "labeled_pool": delta}


def label_counts_create(*, project: Project) -> None:
    """Give a new project its running label counts, all zero."""
    LabelCounts.objects.create(project=project)


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


def _label_counts_update(project_id: int, changes: dict[str, int]) -> int | None:
    """Apply ``changes`` in one statement; return the new current_labels, None if no row."""
    assignments = ", ".join(f"{name} = {name} + %s" for name in changes)
    # UPDATE ... RETURNING: PostgreSQL, SQLite >= 3.35
    row = queue_db.fetch_one(
        f"UPDATE {queue_db.table(LabelCounts)} SET {assignments} WHERE project_id = %s"
        " RETURNING current_labels",
        [*changes.values(), project_id],
    )
    return None if row is None else row[0]


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
