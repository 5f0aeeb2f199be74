"""Queue retrain requests and claim a queued version for training, healing the cycle first."""
from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.access import SCIENCE_ROLES, member_require
from annotation.models import Project
from annotation.selectors import label_count_running
from learning.cycle_health import project_busy, send_due
from learning.estimators import DEFAULT_ESTIMATOR
from learning.models import ModelVersion
from learning.selectors import retrain_batch_start
from learning.services.dispatch import _send_train
from learning.services.healing import _heal_locked
from learning.services.liveness import _lock_project


@transaction.atomic
def model_version_request(
    *, project: Project, trigger: str = ModelVersion.Trigger.MANUAL
) -> ModelVersion:
    """Queue a retrain for ``project``; a version already queued absorbs the request.

    The training task is enqueued only after the surrounding transaction commits, so the
    worker always finds the row. A broker that is down does not fail the request: the
    version stays queued and is sent again (``dispatch.py``). A queued version that absorbs
    a request is sent again when its message never reached the broker or no worker took it
    for ``RETRAIN_REDISPATCH_SECONDS`` while nothing else of the project runs.
    """
    # The locked row, not the caller's object, says which model and strategy to record:
    # settings may have changed since the caller loaded the project.
    locked = _lock_project(project.pk)
    label_count = label_count_running(project=project)
    queued = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.QUEUED).first()
    if queued is not None:
        absorbed = {"requested_at_label_count": label_count}
        if trigger == ModelVersion.Trigger.RULE:  # a rule asked too: promote it only if better
            absorbed["trigger"] = trigger
        ModelVersion.objects.filter(pk=queued.pk).update(**absorbed)
        for field, value in absorbed.items():
            setattr(queued, field, value)
        now = timezone.now()
        if send_due(queued, now) and not project_busy(project.pk, now):
            _send_train(queued.pk)
        return queued
    number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        trigger=trigger,
        requested_at_label_count=label_count,
        estimator=(locked.model_spec or {}).get("estimator", DEFAULT_ESTIMATOR),
        query_strategy=locked.query_strategy,
        queued_at=timezone.now(),
    )
    _send_train(version.pk)
    return version


def model_version_request_by(*, project: Project, user) -> ModelVersion:
    """Queue a manual retrain on behalf of ``user``; only owners and scientists may."""
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    return model_version_request(project=project, trigger=ModelVersion.Trigger.MANUAL)


def model_version_request_if_due(
    *, project: Project, label_count: int | None = None, counted_from: int | None = None
) -> ModelVersion | None:
    """Queue a retrain when ``batch_size`` labels arrived since the newest version's request.

    Runs on every label write, so it reads the running counter (maintained in the same
    transaction by every label writer) instead of counting the project's labels; a writer
    that already has the new count (``label_counts_add`` returns it) passes ``label_count``.

    A writer that read the newest version's ``requested_at_label_count`` with its label
    passes it as ``counted_from`` and saves that query. The label's transaction may have
    committed since, so that value may be stale: a retrain it finds due is confirmed by a
    fresh read under the project's lock, which ``model_version_request`` holds while it
    queues one, so two labels that both filled one batch never queue two retrains for it.
    """
    confirm = counted_from is not None
    if counted_from is None:
        counted_from = retrain_batch_start(project=project)
    if label_count is None:
        label_count = label_count_running(project=project)
    if label_count - counted_from < project.batch_size:
        return None
    if not confirm:
        return model_version_request(project=project, trigger=ModelVersion.Trigger.BATCH)
    # Labels that filled the batch together all get here: a fresh read without the lock
    # sends away those that arrive after the first one's request committed.
    if label_count - retrain_batch_start(project=project) < project.batch_size:
        return None
    with transaction.atomic():
        _lock_project(project.pk)
        if label_count - retrain_batch_start(project=project) < project.batch_size:
            return None
        return model_version_request(project=project, trigger=ModelVersion.Trigger.BATCH)


def _claim(version_id: int) -> ModelVersion | None:
    """Move a queued version to training unless another one of its project is training or
    rescoring the pool; heal the project's cycle first (``healing.py``), so a version whose
    worker died no longer blocks it."""
    with transaction.atomic():
        version = ModelVersion.objects.select_related("project").get(pk=version_id)
        _lock_project(version.project_id)
        now = timezone.now()
        _heal_locked(version.project_id, now, claiming=version.pk)
        version.refresh_from_db()
        if version.status != ModelVersion.Status.QUEUED:
            return None
        if project_busy(version.project_id, now, exclude=version.pk):
            return None  # the running one kicks this version off when it finishes
        version.status = ModelVersion.Status.TRAINING
        version.started_at = version.heartbeat_at = now
        version.attempts += 1
        version.error = ""
        version.save(update_fields=["status", "started_at", "heartbeat_at", "attempts", "error"])
        return version
