"""Hand a version's tasks to the broker and keep the record of it on the version.

Before a send, ``dispatched_at`` is stamped (in the caller's transaction); a send the
broker refuses (it is down) sets it back to None and records an alert, and is never raised
into the caller: the label or request that asked for it is already saved. The sweeper
(``healing.py``) sends again whatever has no message in flight.
"""
from __future__ import annotations

import logging

from django.db.models import F
from django.utils import timezone

from core.jobs import task_group_start, task_start_after_commit
from learning.models import Alert, ModelVersion
from learning.services.alerts import _alert

logger = logging.getLogger(__name__)

TRAIN_TASK = "learning.tasks.model_version_train_task"
CHUNK_TASK = "learning.tasks.pool_score_chunk_task"


def _stamp_dispatched(version_id: int, **conditions) -> int:
    return ModelVersion.objects.filter(pk=version_id, **conditions).update(
        dispatched_at=timezone.now(), dispatch_count=F("dispatch_count") + 1
    )


def _send_failed(version_id: int, what: str, exc: Exception) -> None:
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return
    ModelVersion.objects.filter(pk=version_id, dispatched_at__isnull=False).update(
        dispatched_at=None
    )
    _alert(project_id=version.project_id, version=version,
           kind=Alert.Kind.BROKER_UNREACHABLE,
           message=f"v{version.number}: {what} could not be sent, the broker did not answer "
                   f"({type(exc).__name__}: {exc}); it is sent again when the broker is back")


def _send_train(version_id: int) -> None:
    """Send the training task of a queued version after the transaction commits."""
    if _stamp_dispatched(version_id, status=ModelVersion.Status.QUEUED):
        task_start_after_commit(
            TRAIN_TASK, version_id,
            on_failure=lambda exc: _send_failed(version_id, "its training task", exc),
        )


def _send_chunks(version_id: int, scorer_id: int, chunks: list[list[int]], *,
                 stamped: bool = False) -> None:
    """Send pool-scoring chunks ``[lo, hi, ...]`` of a version as one group, at once
    (``stamped``: the caller already stamped the version, under the project's lock)."""
    if not stamped:
        _stamp_dispatched(version_id)
    exc = task_group_start(CHUNK_TASK, ((version_id, scorer_id, lo, hi) for lo, hi, *_ in chunks))
    if exc is not None:
        _send_failed(version_id, f"{len(chunks)} pool-scoring chunk(s)", exc)


def _start_next_queued(project_id: int) -> None:
    queued = (
        ModelVersion.objects.filter(project_id=project_id, status=ModelVersion.Status.QUEUED)
        .order_by("number")
        .values_list("pk", flat=True)
        .first()
    )
    if queued is not None:
        _send_train(queued)
