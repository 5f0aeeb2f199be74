"""Heal a project's retrain cycle: a worker that died, a message the broker lost, a send
that failed.

``_heal_locked`` runs under the project's lock, from every claim (``requests._claim``) and
from ``retrain_sweep``, which every worker runs at start and every
``RETRAIN_SWEEP_SECONDS`` (``learning/tasks.py``). It finds:

- a **training** version whose worker stopped its heartbeat for
  ``RETRAIN_LOST_AFTER_SECONDS`` (``learning/cycle_health.py``): re-queued and sent again, up to
  ``RETRAIN_MAX_ATTEMPTS`` claims; failed with the reason when a newer version is queued
  (it trains on the newer labels instead), when the attempts are used up, or when it ran
  past the task time limit;
- a **pool rescoring** without a sign of life (no chunk running, none sent) for the same
  window: its unwritten chunks are sent again; a chunk that ``RETRAIN_MAX_ATTEMPTS``
  workers started without finishing is given up (its samples keep their older scores); one
  whose chunks were all written gets its last step (ranking, next version) run;
- a **queued** version with no message in the broker (the send failed), or whose message no
  worker took for ``RETRAIN_REDISPATCH_SECONDS`` while nothing else of the project runs: sent
  again. Duplicates are harmless: a claim takes a version once.

Each finding is an ``Alert`` on the project page.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from learning.cycle_health import (
    active_versions,
    clock,
    scoring_in_progress,
    scoring_lost,
    send_due,
    training_timed_out,
    version_alive,
)
from learning.models import Alert, ModelVersion
from learning.services.alerts import _alert
from learning.services.dispatch import _send_chunks, _send_train
from learning.services.liveness import _lock_project
from learning.services.scoring import _pool_score_finish

logger = logging.getLogger(__name__)


def _heal_training(version: ModelVersion, newer: ModelVersion | None, now: dt.datetime,
                   ) -> tuple[str, str]:
    """Re-queue or fail a training version nobody is on; return (kind, message)."""
    max_attempts = settings.RETRAIN_MAX_ATTEMPTS
    heard = clock(version.heartbeat_at or version.started_at)
    if training_timed_out(version, now):
        kind = Alert.Kind.GAVE_UP
        reason = f"training ran past {settings.TRAINING_STALE_SECONDS}s, the task time limit"
    elif version.attempts >= max_attempts:
        kind = Alert.Kind.GAVE_UP
        reason = f"its worker was lost {version.attempts} times while training; given up"
    elif newer is not None:
        kind = Alert.Kind.WORKER_LOST
        reason = (f"its worker was lost while training (last heard from at {heard}); "
                  f"v{newer.number}, queued with the newer labels, trains instead")
    else:
        version.status = ModelVersion.Status.QUEUED
        version.started_at = version.heartbeat_at = version.dispatched_at = None
        version.queued_at = now
        version.save(update_fields=["status", "started_at", "heartbeat_at", "dispatched_at",
                                    "queued_at"])
        return Alert.Kind.WORKER_LOST, (
            f"v{version.number} re-queued: its worker was lost while training (attempt "
            f"{version.attempts} of {max_attempts}, last heard from at {heard})")
    version.status = ModelVersion.Status.FAILED
    version.error = f"worker lost: {reason}"
    version.finished_at = now
    version.save(update_fields=["status", "error", "finished_at"])
    return kind, f"v{version.number} failed: {reason}"


def _heal_scoring(version: ModelVersion, now: dt.datetime) -> list[tuple[str, str]]:
    """Send a lost rescoring's unwritten chunks again, give up those that keep killing their
    worker, or finish one whose chunks are all written; return (kind, message)s."""
    found = []
    left = [chunk for chunk in version.score_chunks_left or []]
    given_up = [chunk for chunk in left if chunk[2] >= settings.RETRAIN_MAX_ATTEMPTS]
    left = [chunk for chunk in left if chunk not in given_up]
    if given_up or version.scored_by_id is None:
        dropped = given_up if version.scored_by_id is not None else given_up + left
        ids = ", ".join(f"{lo}-{hi}" for lo, hi, *_ in dropped) or "unknown"
        version.error = (f"pool rescoring: chunk(s) of sample ids {ids} lost their worker "
                         f"{settings.RETRAIN_MAX_ATTEMPTS} times; their samples keep older scores")
        version.score_chunks_done += len(dropped)
        found.append((Alert.Kind.GAVE_UP, f"v{version.number}: {version.error}"))
        if version.scored_by_id is None:
            left = []
    version.score_chunks_left = left
    if not left:
        version.save(update_fields=["score_chunks_left", "score_chunks_done", "error"])
        version_id, scorer_id = version.pk, version.scored_by_id
        transaction.on_commit(lambda: _pool_score_finish(version_id, scorer_id))
        return found
    sent_before = version.dispatched_at is not None
    version.dispatched_at = now
    version.dispatch_count += 1
    version.save(update_fields=["score_chunks_left", "score_chunks_done", "error",
                                "dispatched_at", "dispatch_count"])
    if sent_before:  # else the failed send has its alert already
        found.append((Alert.Kind.SCORING_LOST, (
            f"v{version.number}: pool rescoring had no worker on it since "
            f"{clock(version.heartbeat_at)}; {len(left)} of {version.score_chunks_total} "
            f"chunk(s) sent again")))
    version_id, scorer_id = version.pk, version.scored_by_id
    transaction.on_commit(lambda: _send_chunks(version_id, scorer_id, left, stamped=True))
    return found


def _heal_locked(project_id: int, now: dt.datetime, *, claiming: int | None = None) -> list[str]:
    """Heal the project's cycle; the caller holds the project's lock. ``claiming`` is the
    queued version the caller is about to claim: it needs no message. Returns what was done."""
    versions = list(active_versions(project_id).order_by("number"))
    queued = [v for v in versions if v.status == ModelVersion.Status.QUEUED]
    must_send: set[int] = set()
    found: list[tuple[ModelVersion, str, str]] = []
    for version in versions:
        if version.status == ModelVersion.Status.TRAINING and not version_alive(version, now):
            newer = next((q for q in queued if q.number > version.number), None)
            kind, message = _heal_training(version, newer, now)
            found.append((version, kind, message))
            if version.status == ModelVersion.Status.QUEUED:
                queued.append(version)
            must_send.update(v.pk for v in queued)  # a claim blocked by it dropped their message
        elif scoring_in_progress(version) and scoring_lost(version, now):
            found += [(version, kind, message) for kind, message in _heal_scoring(version, now)]
    busy = any(version_alive(v, now) for v in versions if v.pk != claiming)
    for version in queued:
        if version.pk == claiming or busy:
            continue
        if version.pk in must_send or send_due(version, now):
            if version.dispatched_at is not None and version.pk not in must_send:
                found.append((version, Alert.Kind.NOT_TAKEN, (
                    f"v{version.number} waiting for a worker since "
                    f"{clock(version.queued_at or version.created_at)}: no worker took it "
                    f"(sent {version.dispatch_count} time(s)); sent again")))
            _send_train(version.pk)
    for version, kind, message in found:
        logger.warning("retrain cycle of project %s: %s", project_id, message)
        _alert(project_id=project_id, version=version, kind=kind, message=message)
    return [message for _v, _k, message in found]


def retrain_sweep(*, project_id: int | None = None) -> list[str]:
    """Heal every project whose cycle has something in flight; return what was done.

    Safe to run from several workers at once: each project is healed under its lock."""
    project_ids = sorted(set(active_versions(project_id).values_list("project_id", flat=True)))
    done: list[str] = []
    for pid in project_ids:
        with transaction.atomic():
            _lock_project(pid)
            done += _heal_locked(pid, timezone.now())
    return done
