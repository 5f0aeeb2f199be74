"""Queue retrain requests, claim a queued version for training, start the next queued one."""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.access import SCIENCE_ROLES, member_require
from annotation.models import Project
from annotation.selectors import label_count_running
from core.jobs import task_start_after_commit
from learning.estimators import DEFAULT_ESTIMATOR
from learning.models import ModelVersion
from learning.selectors import retrain_batch_start

TRAIN_TASK = "learning.tasks.model_version_train_task"


def _lock_project(project_id: int) -> Project:
    # NO KEY UPDATE: serializes a project's retrain requests and claims without making
    # label and lease inserts, whose foreign-key checks share-lock the project row, wait.
    return Project.objects.select_for_update(no_key=True).get(pk=project_id)


@transaction.atomic
def model_version_request(
    *, project: Project, trigger: str = ModelVersion.Trigger.MANUAL
) -> ModelVersion:
    """Queue a retrain for ``project``; a version already queued absorbs the request.

    The training task is enqueued only after the surrounding transaction commits, so the
    worker always finds the row.
    """
    _lock_project(project.pk)
    label_count = label_count_running(project=project)
    queued = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.QUEUED).first()
    if queued is not None:
        ModelVersion.objects.filter(pk=queued.pk).update(requested_at_label_count=label_count)
        queued.requested_at_label_count = label_count
        return queued
    number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        trigger=trigger,
        requested_at_label_count=label_count,
        estimator=(project.model_spec or {}).get("estimator", DEFAULT_ESTIMATOR),
        query_strategy=project.query_strategy,
    )
    task_start_after_commit(TRAIN_TASK, version.pk)
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
    """Move a queued version to training unless another one of its project is training."""
    with transaction.atomic():
        version = ModelVersion.objects.select_related("project").get(pk=version_id)
        _lock_project(version.project_id)
        version.refresh_from_db(fields=["status"])
        if version.status != ModelVersion.Status.QUEUED:
            return None
        stale_before = timezone.now() - dt.timedelta(seconds=settings.TRAINING_STALE_SECONDS)
        ModelVersion.objects.filter(
            project_id=version.project_id,
            status=ModelVersion.Status.TRAINING,
            started_at__lt=stale_before,
        ).update(status=ModelVersion.Status.FAILED, error="worker lost: training timed out")
        if ModelVersion.objects.filter(
            project_id=version.project_id, status=ModelVersion.Status.TRAINING
        ).exists():
            return None  # the running one kicks this version off when it finishes
        if ModelVersion.objects.filter(
            project_id=version.project_id, status=ModelVersion.Status.READY,
            score_chunks_total__isnull=False, scored_sample_count__isnull=True,
            scoring_started_at__gte=stale_before,
        ).exists():
            return None  # its pool rescoring is under way; its last chunk kicks this one off
        version.status = ModelVersion.Status.TRAINING
        version.started_at = timezone.now()
        version.save(update_fields=["status", "started_at"])
        return version


def _start_next_queued(project_id: int) -> None:
    queued = (
        ModelVersion.objects.filter(project_id=project_id, status=ModelVersion.Status.QUEUED)
        .order_by("number")
        .values_list("pk", flat=True)
        .first()
    )
    if queued is not None:
        task_start_after_commit(TRAIN_TASK, queued)
