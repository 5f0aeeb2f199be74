"""The retrain cycle heals itself: a dead worker, a lost message, a broker that is down.

SQLite and eager Celery: a worker's death is a version left ``training`` with an old
heartbeat, a lost message one whose task never ran, a broker outage a send that raises.
"""
import datetime as dt
import threading
import time

import pytest
from celery.canvas import Signature
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from tests.factories import label_given
from learning.models import Alert, ModelVersion
from learning.services import model_version_request, model_version_train, retrain_sweep
from learning.services import dispatch, scoring
from learning.services.cycle import _train_claimed
from learning.services.requests import _claim
from learning.tasks import RetrainSweeper

LONG_AGO = dt.timedelta(minutes=10)  # past the lost-after window, well inside the 31-min timeout


def _version(project, number=1, **fields):
    return ModelVersion.objects.create(project=project, number=number, **fields)


def _broker_down(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(Signature, "apply_async", refuse)


def test_a_dead_training_does_not_block_the_next_version(labeled_project,
                                                          django_capture_on_commit_callbacks):
    """The fault probe: the worker died in `training`; the next request must still train."""
    dead = _version(labeled_project, status="training", started_at=timezone.now() - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        version = model_version_request(project=labeled_project)
    version.refresh_from_db()
    dead.refresh_from_db()
    assert version.number == 2 and version.status == "ready", version.error
    assert version.is_served and version.scored_sample_count is not None
    assert dead.status == "failed"
    assert "worker lost" in dead.error and "v2" in dead.error
    assert Alert.objects.filter(project=labeled_project, version=dead, kind="worker_lost").exists()


def test_a_dead_training_alone_is_requeued_and_trained_by_the_sweep(
        labeled_project, django_capture_on_commit_callbacks):
    dead = _version(labeled_project, status="training", attempts=1,
                    started_at=timezone.now() - LONG_AGO, heartbeat_at=timezone.now() - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        done = retrain_sweep()
    dead.refresh_from_db()
    assert dead.status == "ready" and dead.is_served and dead.attempts == 2, dead.error
    assert any("re-queued" in line for line in done)
    alert = Alert.objects.get(project=labeled_project, kind="worker_lost")
    assert "attempt 1 of 3" in alert.message
    assert alert.resolved_at is not None  # the cycle completed after it


def test_a_live_training_is_left_alone_and_the_queued_one_waits(labeled_project,
                                                                django_capture_on_commit_callbacks):
    now = timezone.now()
    alive = _version(labeled_project, status="training", attempts=1, started_at=now - LONG_AGO,
                     heartbeat_at=now)
    queued = _version(labeled_project, number=2, queued_at=now - LONG_AGO, dispatched_at=None)
    with django_capture_on_commit_callbacks(execute=True) as sent:
        assert retrain_sweep() == []
    assert not sent
    alive.refresh_from_db()
    queued.refresh_from_db()
    assert (alive.status, queued.status) == ("training", "queued")


def test_a_worker_lost_too_often_fails_the_version_with_the_reason(labeled_project, settings):
    settings.RETRAIN_MAX_ATTEMPTS = 2
    dead = _version(labeled_project, status="training", attempts=2,
                    started_at=timezone.now() - LONG_AGO, heartbeat_at=timezone.now() - LONG_AGO)
    retrain_sweep()
    dead.refresh_from_db()
    assert dead.status == "failed" and "lost 2 times" in dead.error
    assert Alert.objects.get(version=dead).kind == "gave_up"


def test_a_training_past_the_time_limit_fails_even_with_a_heartbeat(labeled_project, settings):
    now = timezone.now()
    stuck = _version(labeled_project, status="training", attempts=1, heartbeat_at=now,
                     started_at=now - dt.timedelta(seconds=settings.TRAINING_STALE_SECONDS + 1))
    retrain_sweep()
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "time limit" in stuck.error


def test_a_label_is_saved_while_the_broker_is_down_and_the_retrain_sent_when_it_is_back(
        project, annotator, make_samples, monkeypatch, django_capture_on_commit_callbacks):
    project.batch_size = 6
    project.save()
    samples = make_samples(10, 4)
    for i, sample in enumerate(samples[:5]):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    with monkeypatch.context() as patch:
        _broker_down(patch)
        with django_capture_on_commit_callbacks(execute=True):
            # The label that fills the batch: its request must not fail after the commit.
            label = label_given(sample=samples[5], annotator=annotator, value="2")
    assert label.pk is not None
    version = ModelVersion.objects.get(project=project)
    assert version.status == "queued" and version.dispatched_at is None
    alert = Alert.objects.get(project=project, kind="broker_unreachable")
    assert "sent again when the broker is back" in alert.message
    for i, sample in enumerate(samples[10:14]):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    with django_capture_on_commit_callbacks(execute=True):  # the broker is back
        retrain_sweep()
    version.refresh_from_db()
    assert version.status == "ready" and version.is_served, version.error
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_request_resends_a_queued_version_that_never_reached_the_broker(
        labeled_project, django_capture_on_commit_callbacks):
    version = _version(labeled_project, queued_at=timezone.now(), dispatched_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        again = model_version_request(project=labeled_project)
    assert again.pk == version.pk
    version.refresh_from_db()
    assert version.status == "ready" and version.dispatch_count == 1


def test_a_queued_version_nobody_took_is_sent_again_but_a_fresh_one_is_not(
        labeled_project, settings, django_capture_on_commit_callbacks):
    now = timezone.now()
    fresh = _version(labeled_project, queued_at=now, dispatched_at=now, dispatch_count=1)
    with django_capture_on_commit_callbacks(execute=True) as sent:
        retrain_sweep()
    assert not sent
    old = now - dt.timedelta(seconds=settings.RETRAIN_REDISPATCH_SECONDS + 1)
    ModelVersion.objects.filter(pk=fresh.pk).update(queued_at=old, dispatched_at=old)
    with django_capture_on_commit_callbacks(execute=True):
        retrain_sweep()
    fresh.refresh_from_db()
    assert fresh.status == "ready" and fresh.dispatch_count == 2
    alert = Alert.objects.get(version=fresh)
    assert alert.kind == "not_taken" and "no worker took it (sent 1 time(s))" in alert.message


def test_pool_scoring_chunks_lost_with_their_worker_are_sent_again(
        labeled_project, make_samples, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 4)
    make_samples(10)
    lost = []
    with monkeypatch.context() as patch:  # the chunks' messages vanish with their worker
        patch.setattr(dispatch, "task_group_start", lambda name, args: lost.extend(args))
        with django_capture_on_commit_callbacks(execute=True):
            version = model_version_request(project=labeled_project)
    version.refresh_from_db()
    assert version.status == "ready" and version.is_served
    assert version.score_chunks_total == len(lost) == 3 and version.scored_sample_count is None
    assert [[lo, hi] for lo, hi, _runs in version.score_chunks_left] == [[a[2], a[3]] for a in lost]
    assert retrain_sweep() == []  # sent just now: not lost yet
    ModelVersion.objects.filter(pk=version.pk).update(
        heartbeat_at=timezone.now() - LONG_AGO, dispatched_at=timezone.now() - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        done = retrain_sweep()
    version.refresh_from_db()
    assert version.scored_sample_count == 10 and version.score_chunks_done == 3
    assert version.score_chunks_left == [] and version.error == ""
    assert any("3 of 3 chunk(s) sent again" in line for line in done)


@pytest.fixture
def scoring_in_flight(labeled_project, make_samples, monkeypatch):
    """A version trained and served whose 3 pool-scoring chunks were sent but not run yet."""
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 4)
    make_samples(10)
    monkeypatch.setattr(dispatch, "task_group_start", lambda name, args: list(args) and None)
    version = model_version_request(project=labeled_project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    assert len(version.score_chunks_left) == 3
    return version


def test_a_chunk_that_keeps_killing_its_worker_is_given_up(scoring_in_flight, settings):
    version = scoring_in_flight
    first, *rest = version.score_chunks_left
    first[2] = settings.RETRAIN_MAX_ATTEMPTS  # started that often, never finished
    ModelVersion.objects.filter(pk=version.pk).update(score_chunks_left=[first, *rest])
    for lo, hi, _runs in [first, *rest]:  # the messages come back, the poison one too
        scoring.pool_score_chunk(version_id=version.pk, scorer_id=version.pk, lo=lo, hi=hi)
    version.refresh_from_db()
    assert version.scored_sample_count is not None and version.score_chunks_done == 3
    assert f"{first[0]}-{first[1]} lost its worker" in version.error
    assert Alert.objects.get(version=version).kind == "gave_up"


def test_a_chunk_delivered_twice_counts_once(scoring_in_flight):
    version = scoring_in_flight
    lo, hi, _runs = version.score_chunks_left[0]
    for _ in range(2):
        scoring.pool_score_chunk(version_id=version.pk, scorer_id=version.pk, lo=lo, hi=hi)
    version.refresh_from_db()
    assert version.score_chunks_done == 1 and version.scored_sample_count is None


def test_a_worker_taken_for_dead_does_not_overwrite_the_newer_claim(labeled_project):
    version = model_version_request(project=labeled_project)
    first = _claim(version.pk)
    assert first.attempts == 1
    # The sweeper re-queued it and another worker claimed it again meanwhile.
    ModelVersion.objects.filter(pk=version.pk).update(status="queued")
    second = _claim(version.pk)
    assert second.attempts == 2
    assert _train_claimed(first) is None
    version.refresh_from_db()
    assert version.status == "training" and version.artifact_path == ""
    assert _train_claimed(second) is not None
    version.refresh_from_db()
    assert version.status == "ready" and version.is_served


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_stamps_the_version_while_the_block_runs(project, settings):
    from learning.services.liveness import heartbeat

    settings.RETRAIN_HEARTBEAT_SECONDS = 0.05
    version = _version(project, status="training", attempts=1)
    with heartbeat(version.pk, attempts=1):
        time.sleep(0.3)
        version.refresh_from_db()
        first = version.heartbeat_at
        assert first is not None
        time.sleep(0.2)
        version.refresh_from_db()
        assert version.heartbeat_at > first
    ModelVersion.objects.filter(pk=version.pk).update(heartbeat_at=None)
    with heartbeat(version.pk, attempts=2):  # not this claim's: not kept alive
        time.sleep(0.2)
    version.refresh_from_db()
    assert version.heartbeat_at is None


def test_the_worker_sweeper_sweeps_at_start_and_then_every_interval(monkeypatch):
    calls = []
    monkeypatch.setattr("learning.tasks.retrain_sweep", lambda: calls.append(1) or [])
    sweeper = RetrainSweeper(interval=0.05)
    sweeper.thread.start()
    time.sleep(0.3)
    sweeper.stop.set()
    sweeper.thread.join(timeout=2)
    assert not sweeper.thread.is_alive() and len(calls) >= 3


def test_the_sweeper_survives_a_failing_sweep(monkeypatch):
    def fail():
        raise OperationalError("database is away")

    monkeypatch.setattr("learning.tasks.retrain_sweep", fail)
    sweeper = RetrainSweeper(interval=0.01)
    sweeper.sweep_once()  # logged, not raised
    assert threading.current_thread().is_alive()


def test_the_project_page_shows_a_stuck_cycle_and_its_alerts(
        client, labeled_project, settings, monkeypatch, django_capture_on_commit_callbacks):
    _broker_down(monkeypatch)
    dead = _version(labeled_project, status="training", attempts=1,
                    started_at=timezone.now() - LONG_AGO, heartbeat_at=timezone.now() - LONG_AGO)
    client.force_login(labeled_project.owner)
    page = client.get(reverse("project-detail", args=[labeled_project.slug])).content.decode()
    assert "v1 training, but its worker has not been heard from since" in page
    with django_capture_on_commit_callbacks(execute=True):
        retrain_sweep()  # re-queues v1; the broker refuses it
    dead.refresh_from_db()
    assert dead.status == "queued" and dead.dispatched_at is None
    page = client.get(reverse("project-detail", args=[labeled_project.slug])).content.decode()
    assert 'id="cycle"' in page and 'id="alerts"' in page
    assert "v1 queued since" in page and "the broker could not be reached" in page
    assert "v1 re-queued: its worker was lost while training" in page
    old = timezone.now() - dt.timedelta(seconds=settings.RETRAIN_REDISPATCH_SECONDS + 1)
    ModelVersion.objects.filter(pk=dead.pk).update(queued_at=old, dispatched_at=old,
                                                   dispatch_count=3)
    page = client.get(reverse("project-detail", args=[labeled_project.slug])).content.decode()
    assert "v1 waiting for a worker since" in page and "(sent 3 times)" in page


def test_retrain_wait_says_no_worker_answers_and_exits_non_zero(labeled_project, monkeypatch):
    monkeypatch.setattr("learning.management.commands.retrain.tasks_run_inline", lambda: False)
    monkeypatch.setattr(dispatch, "task_start_after_commit", lambda *a, **k: None)
    monkeypatch.setattr("learning.management.commands.retrain.workers_answering",
                        lambda timeout: [])
    started = time.monotonic()
    with pytest.raises(CommandError, match="no Celery worker answered a ping for 0s"):
        call_command("retrain", labeled_project.slug, "--wait", "--worker-wait", "0")
    assert time.monotonic() - started < 5
    monkeypatch.setattr("learning.management.commands.retrain.workers_answering",
                        lambda timeout: None)
    with pytest.raises(CommandError, match="the broker cannot be reached"):
        call_command("retrain", labeled_project.slug, "--wait", "--worker-wait", "0")
    assert ModelVersion.objects.get(project=labeled_project).status == "queued"
