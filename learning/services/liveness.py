"""Is anyone working on a version? Heartbeats, and the rules that call a worker lost.

A task training a version or scoring its pool stamps ``heartbeat_at`` on it from a thread
every ``RETRAIN_HEARTBEAT_SECONDS`` (``heartbeat``). A worker killed mid-task stops
stamping: after ``RETRAIN_LOST_AFTER_SECONDS`` (a few intervals, so a slow database or a
long-held GIL is not taken for death) the version counts as lost and the sweeper heals it
(``healing.py``). A training also ends after ``TRAINING_STALE_SECONDS`` however alive it
looks: past Celery's hard time limit it cannot finish.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Q
from django.utils import timezone

from annotation.models import Project
from learning.models import ModelVersion

logger = logging.getLogger(__name__)


def _lock_project(project_id: int) -> Project:
    # NO KEY UPDATE: serializes a project's retrain requests and claims without making
    # label and lease inserts, whose foreign-key checks share-lock the project row, wait.
    return Project.objects.select_for_update(no_key=True).get(pk=project_id)


def _lost_before(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(seconds=settings.RETRAIN_LOST_AFTER_SECONDS)


def training_lost(version: ModelVersion, now: dt.datetime) -> bool:
    """A training version whose worker has not stamped it for the lost-after window."""
    beat = version.heartbeat_at or version.started_at
    return beat is None or beat < _lost_before(now)


def training_timed_out(version: ModelVersion, now: dt.datetime) -> bool:
    return (version.started_at is not None and version.started_at
            < now - dt.timedelta(seconds=settings.TRAINING_STALE_SECONDS))


def scoring_in_progress(version: ModelVersion) -> bool:
    return (version.status == ModelVersion.Status.READY
            and version.score_chunks_total is not None and version.scored_sample_count is None)


def scoring_lost(version: ModelVersion, now: dt.datetime) -> bool:
    """A pool rescoring whose chunks failed to reach the broker, or that no worker has
    worked on (or been sent) for the lost-after window."""
    if version.dispatched_at is None:
        return True
    last = max(filter(None, (version.heartbeat_at, version.dispatched_at)))
    return last < _lost_before(now)


def version_alive(version: ModelVersion, now: dt.datetime) -> bool:
    """A training or pool rescoring that some worker is still on."""
    if version.status == ModelVersion.Status.TRAINING:
        return not (training_lost(version, now) or training_timed_out(version, now))
    return scoring_in_progress(version) and not scoring_lost(version, now)


def project_busy(project_id: int, now: dt.datetime, *, exclude: int | None = None) -> bool:
    """Whether a live training or rescoring holds the project's one cycle in flight; its
    end starts the next queued version."""
    candidates = active_versions(project_id).exclude(pk=exclude)
    return any(version_alive(v, now) for v in candidates)


def active_versions(project_id: int | None = None):
    """Versions queued, training, or rescoring the pool: all a cycle can be stuck in."""
    rows = ModelVersion.objects.filter(
        Q(status__in=(ModelVersion.Status.QUEUED, ModelVersion.Status.TRAINING))
        | Q(status=ModelVersion.Status.READY, score_chunks_total__isnull=False,
            scored_sample_count__isnull=True)
    )
    return rows if project_id is None else rows.filter(project_id=project_id)


@contextlib.contextmanager
def heartbeat(version_id: int, *, attempts: int | None = None) -> Iterator[None]:
    """Stamp ``heartbeat_at`` on the version every ``RETRAIN_HEARTBEAT_SECONDS`` from a
    thread while the block runs. With ``attempts``, only while the version is still that
    claim's (a claim the sweeper gave to another worker is not kept alive)."""
    interval = settings.RETRAIN_HEARTBEAT_SECONDS
    stop = threading.Event()

    def beat() -> None:
        rows = ModelVersion.objects.filter(pk=version_id)
        if attempts is not None:
            rows = rows.filter(attempts=attempts)
        try:
            while not stop.wait(interval):
                try:
                    rows.update(heartbeat_at=timezone.now())
                except DatabaseError as exc:  # a missed beat; the next one may get through
                    logger.warning("heartbeat of version %s failed: %s", version_id, exc)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=beat, name=f"heartbeat-{version_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval)
