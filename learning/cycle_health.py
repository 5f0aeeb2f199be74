"""The rules that tell a live retrain cycle from a stuck one, read from a version's signs
of life (pure reads: the project page shows them, the sweeper acts on them).

A task training a version or scoring its pool stamps ``heartbeat_at`` on it from a thread
every ``RETRAIN_HEARTBEAT_SECONDS`` (``learning.services.liveness.heartbeat``). A worker
killed mid-task stops stamping: after ``RETRAIN_LOST_AFTER_SECONDS`` (a few intervals, so a
slow database or a long-held GIL is not taken for death) the version counts as lost and
the sweeper heals it (``learning.services.healing``). A training also ends after
``TRAINING_STALE_SECONDS`` however alive it looks: past Celery's hard time limit it cannot
finish. A queued version's message is ``dispatched_at`` (None: the send failed).
"""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from learning.models import ModelVersion


def clock(moment: dt.datetime | None) -> str:
    """A time of day for messages and the page, in the project's time zone."""
    return timezone.localtime(moment).strftime("%H:%M:%S") if moment else "never"


def last_sign_of_scoring(version: ModelVersion) -> dt.datetime | None:
    """When a rescoring's chunks last ran or were sent."""
    return max(filter(None, (version.heartbeat_at, version.dispatched_at)), default=None)


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
    last = last_sign_of_scoring(version)
    return version.dispatched_at is None or last is None or last < _lost_before(now)


def send_due(version: ModelVersion, now: dt.datetime) -> bool:
    """A queued version with no message in the broker (the send failed), or whose message
    no worker took for ``RETRAIN_REDISPATCH_SECONDS``: it is sent (again)."""
    return version.dispatched_at is None or version.dispatched_at < now - dt.timedelta(
        seconds=settings.RETRAIN_REDISPATCH_SECONDS)


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


def active_versions(project_id: int | None = None) -> QuerySet[ModelVersion]:
    """Versions queued, training, or rescoring the pool: all a cycle can be stuck in."""
    rows = ModelVersion.objects.filter(
        Q(status__in=(ModelVersion.Status.QUEUED, ModelVersion.Status.TRAINING))
        | Q(status=ModelVersion.Status.READY, score_chunks_total__isnull=False,
            scored_sample_count__isnull=True)
    )
    return rows if project_id is None else rows.filter(project_id=project_id)
