"""Celery tasks of the learning app: take ids, call one service. And the retrain sweeper
every worker runs beside its tasks."""
from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import connections

from annotation.models import Project
from core.jobs import task_start_after_commit, tasks_run_inline
from learning.services import model_version_train, pool_cold_start, pool_score_chunk, retrain_sweep
from learning.services.suspicion import label_suspicion_update, label_suspicion_waits

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def model_version_train_task(model_version_id: int) -> None:
    """Train a queued model version; re-delivery of a claimed or finished one is a no-op."""
    model_version_train(version_id=model_version_id)


@shared_task(acks_late=True, ignore_result=True)
def pool_score_chunk_task(model_version_id: int, scorer_id: int, lo: int, hi: int) -> None:
    """Score pool samples with ids in [lo, hi] under version ``scorer_id``; count the chunk.

    Scores are idempotent to rewrite; a chunk is counted once (the version keeps the
    chunks not written yet), so a message delivered twice changes nothing.
    """
    pool_score_chunk(version_id=model_version_id, scorer_id=scorer_id, lo=lo, hi=hi)


@shared_task(acks_late=True, ignore_result=True)
def label_suspicion_task(model_version_id: int) -> None:
    """Judge the project's labels after a retrain; started when its rescoring finished.

    If the project's next retrain is already training or rescoring, this one is skipped:
    that cycle starts the search again when it rests, so the work never delays it. (No
    Celery retry with a countdown: a worker holds such a message unacknowledged, and one
    that loses its broker meanwhile can die restoring it.)
    """
    if not tasks_run_inline() and label_suspicion_waits(version_id=model_version_id):
        logger.info("label search after version %s skipped: the next cycle is running",
                    model_version_id)
        return
    label_suspicion_update(version_id=model_version_id)


@shared_task(acks_late=True, ignore_result=True)
def pool_cold_start_task(project_id: int) -> None:
    """Order a model-less project's queue by k-means diversity; a no-op once a model exists."""
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        pool_cold_start(project=project)


def pool_cold_start_after_commit(*, project_id: int) -> None:
    """Queue the cold start once the surrounding transaction commits (annotation's
    ``samples_added`` hook): a worker must find the samples. With the broker down it is
    skipped (logged): the queue stays in random order until the first model ranks it."""
    task_start_after_commit(pool_cold_start_task.name, project_id, on_failure=lambda exc: None)


class RetrainSweeper:
    """A thread in the worker's main process that runs ``retrain_sweep`` at start and every
    ``RETRAIN_SWEEP_SECONDS``: a plain ``celery worker`` heals the cycle, no beat needed.

    Started by ``worker_ready``, so only worker processes sweep (web processes and eager
    tests never do). Every worker sweeps; projects are healed under their lock, so
    several at once do no harm.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="retrain-sweeper", daemon=True)

    def sweep_once(self) -> None:
        try:
            for action in retrain_sweep():
                logger.info("retrain sweeper: %s", action)
        except Exception:  # the database or broker is away; the next sweep tries again
            logger.exception("retrain sweep failed")
        finally:
            connections.close_all()  # this thread's connections only

    def run(self) -> None:
        while True:
            self.sweep_once()
            if self.stop.wait(self.interval):
                return


_sweeper: RetrainSweeper | None = None


@worker_ready.connect
def _start_retrain_sweeper(**_kwargs) -> None:
    global _sweeper
    if settings.RETRAIN_SWEEP_SECONDS > 0 and _sweeper is None:
        _sweeper = RetrainSweeper(settings.RETRAIN_SWEEP_SECONDS)
        _sweeper.thread.start()
        logger.info("retrain sweeper started: every %ss", settings.RETRAIN_SWEEP_SECONDS)


@worker_shutdown.connect
def _stop_retrain_sweeper(**_kwargs) -> None:
    if _sweeper is not None:
        _sweeper.stop.set()
