"""Celery tasks of the annotation app: take ids, call one service."""
from celery import shared_task

from annotation.services import import_job_run


# Large archives of images take longer than the default task limit; a soft limit lets the
# service undo the import and record why before the hard limit kills the worker.
@shared_task(acks_late=True, ignore_result=True, soft_time_limit=4 * 3600, time_limit=4 * 3600 + 120)
def import_job_run_task(import_job_id: int) -> None:
    """Run an import job; a finished job is a no-op, a dead worker's job is taken over."""
    import_job_run(job_id=import_job_id)
