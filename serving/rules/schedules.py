"""Per-project scheduled jobs (Settings → Rules): a retrain or a label export on a cron
expression, stored as django-celery-beat rows (``PeriodicTask`` + ``CrontabSchedule``, UTC)
that the one beat reads; no restart needed."""
from __future__ import annotations

import json
from pathlib import Path

from celery.schedules import crontab
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from annotation.models import Project
from annotation.selectors import label_export_chunks
from core.errors import DomainError
from learning.models import ModelVersion
from learning.services import model_version_request

JOBS = {"retrain": "serving.tasks.scheduled_retrain_task",
        "export": "serving.tasks.scheduled_export_task"}
FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


class InvalidSchedule(DomainError):
    code = "invalid"


def _name(project: Project, job: str) -> str:
    return f"project-{project.pk}-{job}"


def cron_check(expression: str) -> dict[str, str]:
    """The five fields of a cron expression (minute hour day-of-month month day-of-week),
    checked by Celery's own parser."""
    parts = expression.split()
    if len(parts) != 5:
        raise InvalidSchedule(f"give five fields (minute hour day month weekday), not {expression!r}")
    fields = dict(zip(FIELDS, parts))
    try:
        crontab(**fields)
    except (ValueError, TypeError) as exc:
        raise InvalidSchedule(f"{expression!r} is not a cron expression: {exc}") from None
    return fields


@transaction.atomic
def schedule_set(*, project: Project, job: str, expression: str) -> PeriodicTask | None:
    """Run ``job`` (retrain | export) for ``project`` on the cron ``expression``; an empty
    expression removes the schedule."""
    if job not in JOBS:
        raise InvalidSchedule(f"unknown job {job!r}; choose from {', '.join(JOBS)}")
    expression = " ".join(expression.split())
    if not expression:
        PeriodicTask.objects.filter(name=_name(project, job)).delete()
        return None
    cron, _ = CrontabSchedule.objects.get_or_create(**cron_check(expression), timezone="UTC")
    task, _ = PeriodicTask.objects.update_or_create(
        name=_name(project, job),
        defaults={"task": JOBS[job], "crontab": cron, "interval": None,
                  "args": json.dumps([project.pk]), "enabled": True,
                  "description": f"{job} of project {project.slug}"})
    return task


def schedules_of(*, project: Project) -> dict[str, dict]:
    """Each job's cron expression ('' when none) and when beat last ran it."""
    tasks = {t.name: t for t in PeriodicTask.objects.filter(
        name__in=[_name(project, job) for job in JOBS]).select_related("crontab")}
    out = {}
    for job in JOBS:
        task = tasks.get(_name(project, job))
        cron = task.crontab if task is not None else None
        expression = " ".join(getattr(cron, f) for f in FIELDS) if cron is not None else ""
        out[job] = {"cron": expression, "last_run_at": task.last_run_at if task else None}
    return out


def scheduled_retrain(*, project_id: int) -> ModelVersion | None:
    """The scheduled retrain: one more request (a queued version absorbs it)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    return model_version_request(project=project, trigger=ModelVersion.Trigger.SCHEDULE)


def scheduled_export(*, project_id: int) -> Path | None:
    """The scheduled export: the current labels as CSV under MEDIA_ROOT/exports/<slug>/."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    folder = Path(settings.MEDIA_ROOT) / "exports" / project.slug
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"labels-{timezone.now():%Y%m%dT%H%M%SZ}.csv"
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        for chunk in label_export_chunks(project=project, history=False, fmt="csv"):
            out.write(chunk)
    partial.rename(path)
    return path
