"""Celery tasks of the serving app: take ids (or nothing), call one service."""
from celery import shared_task

from serving.retention import prediction_logs_prune
from serving.rules.evaluation import rules_evaluate
from serving.rules.schedules import scheduled_export, scheduled_retrain


@shared_task(acks_late=True, ignore_result=True)
def prediction_logs_prune_task() -> None:
    """Delete raw prediction logs past ``PREDICTION_LOG_RETENTION_DAYS`` (rollups stay)."""
    prediction_logs_prune()


@shared_task(acks_late=True, ignore_result=True)
def rules_evaluate_task() -> None:
    """Evaluate every enabled KPI rule (Celery beat, every minute); never raises for a rule."""
    rules_evaluate()


@shared_task(acks_late=True, ignore_result=True)
def scheduled_retrain_task(project_id: int) -> None:
    """A project's cron retrain (Settings → Rules and schedules)."""
    scheduled_retrain(project_id=project_id)


@shared_task(acks_late=True, ignore_result=True)
def scheduled_export_task(project_id: int) -> None:
    """A project's cron export of its labels (CSV under MEDIA_ROOT/exports/<slug>/)."""
    scheduled_export(project_id=project_id)
