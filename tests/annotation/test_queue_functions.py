"""The PL/pgSQL queue functions behave exactly as the Python path of the queue services.

Each scenario runs through both paths: ``python`` forces the Python path (the one SQLite
takes) by switching the functions off, ``database`` calls them; only PostgreSQL has them.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import queue_functions_sql
from core.errors import DomainError
from annotation.errors import SampleNotAvailable, SampleNotFound
from annotation.models import Label, LabelCounts, Lease, Membership, Project, Sample
from annotation.selectors import membership_get
from annotation.services import (
    label_counts_rebuild,
    label_submit,
    label_undo_last,
    queue_db,
    sample_lease_next,
    sample_skip,
)
from learning.models import ModelVersion
from learning.services import model_version_request_if_due
from tests.conftest import require_service
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

def _require_postgresql() -> None:
    """The functions exist on PostgreSQL only: skip on a local SQLite run, fail under CI."""
    if connection.vendor != "postgresql":
        require_service("PostgreSQL", "the queue functions exist on PostgreSQL only; "
                                      "set DATABASE_URL=postgres://...")


@pytest.fixture
def postgresql() -> None:
    _require_postgresql()


on_postgresql = pytest.mark.usefixtures("postgresql")


def test_the_sql_names_the_models_tables_and_values():
    sql = re.sub(r"--.*", "", "\n".join(queue_functions_sql.CREATE))
    tables = set(re.findall(r"\b(?:annotation|learning)_[a-z]+\b", sql))
    tables -= {"annotation_lease_next", "annotation_label_submit"}
    assert tables == {model._meta.db_table for model in (Sample, Lease, Label, LabelCounts,
                                                         ModelVersion)}
    outcomes = {"not_found", "existing", "already_labeled", "not_given", "leased", "no_counts",
                "created"}
    literals = set(re.findall(r"'([^']*)'", sql)) - outcomes - {"synchronous_commit", "off"}
    literals -= {"label counts of project % vanished"}
    assert literals == {Sample.Status.UNLABELED, Sample.Status.LABELED, Sample.Split.POOL,
                        Sample.Split.TEST}


@pytest.fixture(params=["python", "database"])
def path(request, monkeypatch):
    """Which path the queue services take; ``python`` switches the functions off."""
    if request.param == "database":
        _require_postgresql()
    if request.param == "python":
        monkeypatch.setattr(queue_db, "has_queue_functions", lambda: False)
    return request.param


def _project(*, n_pool: int, n_test: int = 0, counts: bool = True, **fields) -> Project:
    """A text project whose samples' queue order is fixed: pool0, pool1, ...; test0, ..."""
    project = ProjectFactory(**{"kind": Project.Kind.TEXT, **fields})
    for split, n in ((Sample.Split.POOL, n_pool), (Sample.Split.TEST, n_test)):
        for i in range(n):
            Sample.objects.create(project=project, split=split, external_id=f"{split}{i}",
                                  text=f"text {split} {i}", score=1.0 - i / 100,
                                  random_key=i / 100)
    if counts:
        LabelCounts.objects.create(project=project)  # as project_create makes it
    return project


def _annotators(project: Project, n: int) -> list:
    users = [UserFactory() for _ in range(n)]
    Membership.objects.bulk_create(
        Membership(project=project, user=user, role=Membership.Role.ANNOTATOR) for user in users
    )
    return users


def _ext(sample: Sample | None) -> str | None:
    return None if sample is None else sample.external_id


def _sample(project: Project, external_id: str) -> Sample:
    return Sample(pk=Sample.objects.get(project=project, external_id=external_id).pk,
                  project=project)


def _counts(project: Project) -> tuple[int, int, int]:
    counts = LabelCounts.objects.get(project=project)
    return counts.labeled_pool, counts.labeled_test, counts.current_labels


@on_postgresql
@pytest.mark.parametrize("overlap", [1, 2])
def test_a_random_walk_gives_the_same_outcomes_on_both_paths(monkeypatch, overlap):
    """Leases, labels (with a suggestion shown or not), repeats, other values, skips,
    expiries, undos and newly served models in a random order, replayed on two like
    projects, one per path: every outcome and every row must match."""

    def walk(project: Project) -> list:
        users = _annotators(project, 3)
        rng = random.Random(7)
        held: dict[int, str] = {}
        trace = []
        for _step in range(140):
            op, i = rng.choice(["next", "next", "label", "label", "again", "other", "stale",
                                "skip", "expire", "undo", "foreign", "serve"]), rng.randrange(3)
            user = users[i]
            suggested = rng.choice([None, 1, 2])
            try:
                if op == "serve":
                    trace.append((op, _serve_next_version(project)))
                elif op == "next":
                    sample = sample_lease_next(project=project, annotator=user)
                    trace.append((op, i, _ext(sample),
                                  sample is not None and sample.lease_expires is not None))
                    if sample is not None:
                        held[i] = sample.external_id
                elif op in ("label", "again", "other") and i in held:
                    value = project.labels[1 if op == "other" else 0]
                    label = label_submit(sample=_sample(project, held[i]), annotator=user,
                                         value=value, duration_ms=i * 100,
                                         suggested_version=suggested)
                    trace.append((op, i, held[i], label.value, label.is_new,
                                  label.duration_ms, label.annotator_id == user.pk,
                                  label.served_version, label.suggested_version))
                elif op == "stale":  # a sample this annotator was never given
                    external_id = rng.choice(["pool0", "pool3", "test1"])
                    label = label_submit(sample=_sample(project, external_id), annotator=user,
                                         value="0", suggested_version=suggested)
                    trace.append((op, i, external_id, label.value, label.is_new,
                                  label.served_version, label.suggested_version))
                elif op == "skip" and i in held:
                    sample_skip(sample=_sample(project, held[i]), annotator=user)
                    trace.append((op, i, held.pop(i)))
                elif op == "expire":
                    Lease.objects.filter(project=project, annotator=user).update(
                        expires_at=timezone.now() - dt.timedelta(seconds=1))
                    trace.append((op, i))
                elif op == "undo":
                    trace.append((op, i, label_undo_last(project=project,
                                                         annotator=user).external_id))
                elif op == "foreign":
                    label_submit(sample=Sample(pk=foreign.pk, project=project), annotator=user,
                                 value="0")
            except DomainError as exc:
                detail = dict(exc.detail) if isinstance(exc.detail, dict) else exc.detail
                if isinstance(detail, dict) and "sample" in detail:
                    detail["sample"] = Sample.objects.filter(pk=detail["sample"]).values_list(
                        "external_id", flat=True).first()
                trace.append((op, i, type(exc).__name__, exc.message, detail))
        rows = {
            "samples": sorted(Sample.objects.filter(project=project).values_list(
                "external_id", "status", "label_count")),
            "labels": sorted(((label.sample.external_id, users.index(label.annotator),
                               label.value, label.duration_ms, label.superseded_at is None,
                               label.served_version, label.suggested_version)
                              for label in Label.objects.filter(sample__project=project)),
                             key=repr),
            "leases": sorted((lease.sample.external_id, users.index(lease.annotator),
                              lease.skipped) for lease in Lease.objects.filter(project=project)),
            "counts": _counts(project),
        }
        return [trace, rows]

    foreign = Sample.objects.create(project=ProjectFactory(), external_id="elsewhere")
    fields = {"n_pool": 8, "n_test": 3, "overlap": overlap, "test_fraction": 0.3,
              "batch_size": 1000}
    with monkeypatch.context() as python_only:
        python_only.setattr(queue_db, "has_queue_functions", lambda: False)
        expected = walk(_project(**fields))
    got = walk(_project(**fields))
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert {step[0] for step in expected[0]} >= {"next", "label", "again", "other", "skip",
                                                 "undo", "foreign", "stale", "serve"}
    versions = {row[5:] for row in expected[1]["labels"]}
    assert {served for served, _ in versions} >= {None, 1, 2}  # labels before and under models
    assert {suggested for _, suggested in versions} >= {None, 1, 2}


def _serve_next_version(project: Project) -> int:
    """Promote a new model version of ``project`` (as promotion does: one served at a time)."""
    number = ModelVersion.objects.filter(project=project).count() + 1
    ModelVersion.objects.filter(project=project).update(is_served=False)
    ModelVersion.objects.create(project=project, number=number, status="ready", is_served=True)
    return number


def test_a_label_records_the_served_version_and_the_suggestion_shown(path):
    project = _project(n_pool=4, n_test=2, test_fraction=0.0)
    (user,) = _annotators(project, 1)

    def submit(external_id, suggested=None, value="0"):
        if Sample.objects.get(project=project, external_id=external_id).split == "test":
            now = timezone.now()  # held-out samples come leased by the queue
            Lease.objects.create(sample=_sample(project, external_id), annotator=user,
                                 project=project, created_at=now,
                                 expires_at=now + dt.timedelta(minutes=5))
        label = label_submit(sample=_sample(project, external_id), annotator=user, value=value,
                             suggested_version=suggested)
        stored = Label.objects.get(pk=label.pk)
        assert (stored.served_version, stored.suggested_version) \
            == (label.served_version, label.suggested_version)
        return label.served_version, label.suggested_version

    assert submit("pool0", suggested=None) == (None, None)  # no model yet
    _serve_next_version(project)
    assert submit("pool1", suggested=1) == (1, 1)
    assert submit("pool2") == (1, None)  # no suggestion shown
    assert submit("test0", suggested=1) == (1, None)  # never one on a held-out sample
    assert submit("pool1", suggested=7) == (1, 1)  # a repeat keeps what was recorded
    _serve_next_version(project)
    assert submit("pool3", suggested=1) == (2, 1)  # an older suggestion, as the client says


@on_postgresql
def test_each_service_is_one_round_trip():
    project = _project(n_pool=3, batch_size=2)
    (user,) = _annotators(project, 1)
    # One label since the newest version's request: the retrain-due check needs no query.
    LabelCounts.objects.filter(project=project).update(current_labels=10)
    ModelVersion.objects.create(project=project, number=1, requested_at_label_count=10)
    membership = membership_get(slug=project.slug, user=user)
    with CaptureQueriesContext(connection) as queries:
        sample = sample_lease_next(project=project, annotator=user, membership=membership)
    assert [q["sql"].split("(")[0] for q in queries] == ["SELECT * FROM annotation_lease_next"]
    sample.project = project  # as the API does
    with CaptureQueriesContext(connection) as queries:
        label_submit(sample=sample, annotator=user, value="1", membership=membership)
    assert [q["sql"].split("(")[0] for q in queries] == ["SELECT * FROM annotation_label_submit"]


def test_the_held_lease_comes_back_with_its_fields(path):
    project = _project(n_pool=3, labels=["a", "b"], kind=Project.Kind.TABULAR)
    Sample.objects.filter(project=project, external_id="pool0").update(values={"age": 41})
    (user,) = _annotators(project, 1)
    first = sample_lease_next(project=project, annotator=user)
    again = sample_lease_next(project=project, annotator=user)
    lease = Lease.objects.get(annotator=user)
    for sample in (first, again):
        assert (sample.pk, sample.project_id, sample.external_id, sample.split, sample.text,
                sample.values, sample.image.name, sample.lease_expires) == (
            lease.sample_id, project.pk, "pool0", "pool", "text pool 0", {"age": 41}, "",
            lease.expires_at)


def test_a_held_sample_labeled_meanwhile_is_not_handed_back(path):
    project = _project(n_pool=3)
    (user,) = _annotators(project, 1)
    held = sample_lease_next(project=project, annotator=user)
    Sample.objects.filter(pk=held.pk).update(status=Sample.Status.LABELED)
    assert _ext(sample_lease_next(project=project, annotator=user)) == "pool1"
    Label.objects.create(sample_id=Sample.objects.get(external_id="pool1",
                                                      project=project).pk,
                         annotator=user, value="0")
    assert _ext(sample_lease_next(project=project, annotator=user)) == "pool2"


def test_the_test_split_keeps_its_share(path):
    project = _project(n_pool=20, n_test=10, test_fraction=0.25)
    (user,) = _annotators(project, 1)
    splits = []
    for _ in range(16):
        sample = sample_lease_next(project=project, annotator=user)
        splits.append(sample.split)
        label_submit(sample=sample, annotator=user, value="0")
    assert "".join(s[0] for s in splits) == "tppptppptppptppp"
    assert _counts(project) == (12, 4, 16)


def test_a_skipped_sample_goes_to_others_and_never_back(path):
    project = _project(n_pool=2, test_fraction=0.0)
    skipper, other = _annotators(project, 2)
    skipped = sample_lease_next(project=project, annotator=skipper)
    sample_skip(sample=skipped, annotator=skipper)
    # A skip holds no place, even one whose end is still ahead.
    Lease.objects.update(expires_at=timezone.now() + dt.timedelta(minutes=5))
    assert _ext(sample_lease_next(project=project, annotator=skipper)) == "pool1"
    assert _ext(sample_lease_next(project=project, annotator=other)) == "pool0"
    label_submit(sample=skipped, annotator=other, value="0")
    assert sample_lease_next(project=project, annotator=other) is None
    label_submit(sample=_sample(project, "pool1"), annotator=skipper, value="0")
    assert sample_lease_next(project=project, annotator=skipper) is None


def test_an_expired_lease_is_reclaimed_and_its_label_refused(path):
    project = _project(n_pool=1)
    first, second = _annotators(project, 2)
    only = sample_lease_next(project=project, annotator=first)
    assert sample_lease_next(project=project, annotator=second) is None
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert sample_lease_next(project=project, annotator=second).pk == only.pk
    with pytest.raises(SampleNotAvailable) as refused:
        label_submit(sample=only, annotator=first, value="0")
    assert (refused.value.message, refused.value.detail) == (
        "this sample is leased by another annotator", {"sample": only.pk})


def test_a_label_after_an_expired_lease_is_taken_while_the_place_is_free(path):
    project = _project(n_pool=1)
    (user,) = _annotators(project, 1)
    only = sample_lease_next(project=project, annotator=user)
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert label_submit(sample=only, annotator=user, value="2").is_new
    assert not Lease.objects.exists()


def test_a_second_submit_is_idempotent_and_another_value_is_refused(path):
    project = _project(n_pool=2)
    (user,) = _annotators(project, 1)
    sample = sample_lease_next(project=project, annotator=user)
    label = label_submit(sample=sample, annotator=user, value="1", duration_ms=700)
    again = label_submit(sample=sample, annotator=user, value="1", duration_ms=5)
    stored = Label.objects.get()
    for got, is_new in ((label, True), (again, False)):
        assert (got.pk, got.sample_id, got.annotator, got.value, got.duration_ms,
                got.created_at, got.superseded_at, got.is_correction, got.is_new,
                got._state.adding) == (
            stored.pk, sample.pk, user, "1", 700, stored.created_at, None, False, is_new, False)
    with pytest.raises(SampleNotAvailable) as refused:
        label_submit(sample=sample, annotator=user, value="2")
    assert (refused.value.message, refused.value.detail) == (
        "you already labeled this sample with another value; undo it first",
        {"sample": sample.pk, "value": "1"})
    assert _counts(project) == (1, 0, 1)


def test_a_labeled_sample_and_a_sample_of_another_project_are_refused(path):
    project = _project(n_pool=2)
    first, second = _annotators(project, 2)
    sample = sample_lease_next(project=project, annotator=first)
    label_submit(sample=sample, annotator=first, value="0")
    with pytest.raises(SampleNotAvailable) as refused:
        label_submit(sample=sample, annotator=second, value="0")
    assert (refused.value.message, refused.value.detail) == (
        "this sample is already labeled", {"sample": sample.pk})
    elsewhere = Sample.objects.create(project=ProjectFactory())
    with pytest.raises(SampleNotFound) as missing:
        label_submit(sample=Sample(pk=elsewhere.pk, project=project), annotator=first, value="0")
    assert (missing.value.message, missing.value.detail) == (
        "that sample is not part of this project", {"sample": elsewhere.pk})


@on_postgresql
def test_an_id_beyond_bigint_is_not_found(path):
    project = _project(n_pool=1)
    (user,) = _annotators(project, 1)
    with pytest.raises(SampleNotFound):
        label_submit(sample=Sample(pk=2**63, project=project), annotator=user, value="0")


def test_overlap_counts_a_sample_labeled_at_the_overlap(path):
    project = _project(n_pool=1, n_test=1, overlap=2, test_fraction=0.5)
    a, b = _annotators(project, 2)
    for user in (a, b):
        assert _ext(sample_lease_next(project=project, annotator=user)) == "test0"
    label_submit(sample=_sample(project, "test0"), annotator=a, value="0")
    assert _counts(project) == (0, 0, 1)
    label_submit(sample=_sample(project, "test0"), annotator=b, value="1")
    assert _counts(project) == (0, 1, 2)
    assert Sample.objects.get(external_id="test0", project=project).label_count == 2


def test_a_missing_counter_row_is_counted_once(path):
    project = _project(n_pool=3, counts=False)
    Sample.objects.filter(project=project, external_id="pool2").update(
        status=Sample.Status.LABELED, label_count=1)
    (user,) = _annotators(project, 1)
    for _ in range(2):
        label_submit(sample=sample_lease_next(project=project, annotator=user), annotator=user,
                     value="0")
    assert _counts(project) == (3, 0, 2)  # the labeled row without a label counts as labeled


def test_a_retrain_is_requested_exactly_when_the_batch_fills(path):
    project = _project(n_pool=7, batch_size=3)
    (user,) = _annotators(project, 1)
    requested = []
    for _ in range(7):
        label_submit(sample=sample_lease_next(project=project, annotator=user), annotator=user,
                     value="0")
        requested.append(ModelVersion.objects.filter(project=project).count())
        # Training at once, so the next batch's request is not absorbed by a queued version.
        ModelVersion.objects.update(status=ModelVersion.Status.TRAINING)
    assert requested == [0, 0, 1, 1, 1, 2, 2]
    assert list(ModelVersion.objects.filter(project=project).order_by("number").values_list(
        "trigger", "requested_at_label_count")) == [("batch", 3), ("batch", 6)]


def test_a_stale_start_of_the_batch_queues_no_second_retrain():
    project = _project(n_pool=4, batch_size=3)
    (user,) = _annotators(project, 1)
    Label.objects.bulk_create(Label(sample=sample, annotator=user, value="0")
                              for sample in Sample.objects.filter(project=project)[:3])
    label_counts_rebuild(project_id=project.pk)  # retrain requests read the running counter
    first = model_version_request_if_due(project=project, label_count=3, counted_from=0)
    assert first is not None
    # A label that read the start of the batch before ``first`` was queued, and whose
    # check runs after it, finds the batch taken (as if ``first`` were training already).
    ModelVersion.objects.filter(pk=first.pk).update(status=ModelVersion.Status.TRAINING)
    assert model_version_request_if_due(project=project, label_count=4, counted_from=0) is None
    assert ModelVersion.objects.filter(project=project).count() == 1


def _lease_call(queries) -> str:
    (sql,) = [q["sql"] for q in queries if "annotation_lease_next" in q["sql"]]
    return sql


@on_postgresql
def test_leases_stay_synchronous_inside_a_transaction():
    project = _project(n_pool=2)
    (user,) = _annotators(project, 1)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        sample_lease_next(project=project, annotator=user)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("on",)
    assert _lease_call(queries).endswith("false::boolean)")


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_leases_outside_a_transaction_commit_asynchronously():
    project = _project(n_pool=2)
    (user,) = _annotators(project, 1)
    with CaptureQueriesContext(connection) as queries:
        sample = sample_lease_next(project=project, annotator=user)
    assert _lease_call(queries).endswith("true::boolean)")
    assert Lease.objects.get().sample_id == sample.pk
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)  # transaction-local: gone with the lease's commit


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_labels_never_queue_two_retrains_for_one_batch(monkeypatch):
    """Many annotators label at once; each retrain starts training as soon as it is queued
    (so it cannot absorb a second request): consecutive retrains are a batch apart."""
    from learning import tasks

    def claim_at_once(version_id: int) -> None:
        ModelVersion.objects.filter(pk=version_id).update(status=ModelVersion.Status.TRAINING)

    monkeypatch.setattr(tasks.model_version_train_task, "apply_async",
                        lambda args, kwargs=None, **options: claim_at_once(*args))
    workers, batch = 12, 3
    project = _project(n_pool=workers * 4, batch_size=batch, test_fraction=0.0)
    users = _annotators(project, workers)
    start = threading.Barrier(workers)
    failures = []

    def annotate(user) -> None:
        try:
            start.wait(timeout=30)
            while (sample := sample_lease_next(project=project, annotator=user)) is not None:
                label_submit(sample=sample, annotator=user, value="0")
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert Label.objects.count() == workers * 4
    starts = list(ModelVersion.objects.filter(project=project).order_by("number")
                  .values_list("requested_at_label_count", flat=True))
    assert starts and all(later - earlier >= batch for earlier, later in zip(starts, starts[1:]))


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_retrain_request_holding_the_project_lock_keeps_no_annotator_waiting():
    """Lease and label inserts share-lock the project row (foreign keys): the lock that
    serializes retrain requests must not be one that conflicts with that."""
    from django.db import connections

    from learning.services.requests import _lock_project

    project = _project(n_pool=3)
    (user,) = _annotators(project, 1)
    locked, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():
                _lock_project(project.pk)
                locked.set()
                done.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        sample = sample_lease_next(project=project, annotator=user)
        label = label_submit(sample=Sample(pk=sample.pk, project=project), annotator=user,
                             value=project.labels[0])
        assert label.is_new
    finally:
        done.set()
        holder.join()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
