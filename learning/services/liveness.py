"""Heartbeats of the tasks working on a version, and the project lock the cycle's writes
take. The rules that read the heartbeats are in ``learning/cycle_health.py``."""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from annotation.models import Project
from learning.models import ModelVersion

logger = logging.getLogger(__name__)


def _lock_project(project_id: int) -> Project:
    # NO KEY UPDATE: serializes a project's retrain requests and claims without making
    # label and lease inserts, whose foreign-key checks share-lock the project row, wait.
    return Project.objects.select_for_update(no_key=True).get(pk=project_id)


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
