"""Running import jobs: start or queue one, claim it, run the pass, complete it or undo it."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from annotation import archives, hooks, rows
from annotation.errors import InvalidImport
from annotation.models import ImportJob, Project, Sample
from annotation.selectors import project_sample_total_forget
from annotation.services import ledger
from annotation.services.imports.reading import ImportPass, Progress, media_folder
from core.jobs import task_start_after_commit

logger = logging.getLogger(__name__)

# A running job whose progress has not moved for this long belongs to a dead worker.
STALE_AFTER = dt.timedelta(minutes=5)
# After an import of at least this many rows, PostgreSQL's statistics of the sample table
# are refreshed at once instead of when autovacuum gets to it. Until then the planner still
# sees the table before the import: after 10M rows imported into an empty table, each
# rescoring chunk's write of its top (which the partial index ``sample_scored`` answers in
# milliseconds) was planned as a walk of the queue index over every pool row, 30 s a chunk
# on a table larger than memory. ANALYZE samples the table: 1.2 s at 10M rows.
ANALYZE_AFTER_ROWS = 10_000


def import_job_start(*, job: ImportJob) -> ImportJob:
    """Run a small import right away, or queue a large one for a Celery worker.

    Returns the job as it is now: finished for a small file, queued for a large one.
    """
    if job.bytes_total <= settings.IMPORT_INLINE_MAX_BYTES:
        return import_job_run(job_id=job.pk)
    task_start_after_commit("annotation.tasks.import_job_run_task", job.pk)
    return job


def _claim(job_id: int) -> ImportJob | None:
    """Mark the job running; take over one whose worker died. None when nothing is to do."""
    now = timezone.now()
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().select_related("project", "user").get(pk=job_id)
        if job.is_finished:
            return None
        if job.status == ImportJob.Status.RUNNING:
            if job.updated_at > now - STALE_AFTER:
                return None  # another worker is on it
            logger.warning("import %s: taking over from a worker that stopped", job.pk)
            _purge(job)
        job.status = ImportJob.Status.RUNNING
        job.phase = ImportJob.Phase.CHECKING
        job.started_at = now
        job.rows_total = None
        job.rows_done = job.rows_ok = job.rows_bad = job.bytes_done = 0
        job.report = {}
        job.save(update_fields=["status", "phase", "started_at", "rows_total", "rows_done",
                                "rows_ok", "rows_bad", "bytes_done", "report", "updated_at"])
    return job


@contextmanager
def _source(job: ImportJob, path: str | None) -> Iterator[BinaryIO]:
    if path is not None:
        with open(path, "rb") as stream:
            yield stream
    else:
        with default_storage.open(job.file.name, "rb") as stream:
            yield stream


def import_job_run(*, job_id: int, path: str | None = None,
                   progress: Progress | None = None) -> ImportJob:
    """Run an import job to the end and return it, done or failed with its report.

    Idempotent: a finished job is returned as it is. On SQLite deliberately not one
    transaction: each batch commits so that writers are not locked out for minutes; a
    failure undoes the batches (see the module docstring).
    """
    job = _claim(job_id)
    if job is None:
        return ImportJob.objects.get(pk=job_id)
    load = ImportPass(job, progress)
    try:
        with load.stage:  # left without publish(), it drops what it staged
            with _source(job, path) as stream:
                load.read(stream)
            if not load.rows_bad and load.rows_ok:
                load.publish()
                return _complete(load)
        _purge(job)  # the images the pass stored
        message = (f"refused: {load.rows_bad} bad row(s); nothing was imported" if load.rows_bad
                   else "refused: the file has no rows")
        return load.finish(ImportJob.Status.FAILED, message)
    except (rows.FileError, archives.ArchiveError, InvalidImport) as exc:
        _purge(job)
        return load.finish(ImportJob.Status.FAILED, f"refused: {exc}; nothing was imported")
    except BaseException as exc:
        # A database error, a full disk, Ctrl-C, a task time limit: undo, say so, re-raise.
        logger.exception("import %s stopped", job.pk)
        try:
            _purge(job)
            load.finish(ImportJob.Status.FAILED, f"stopped by an error ({type(exc).__name__}: "
                                                 f"{exc}); nothing was imported")
        except Exception:  # the database may be gone; the next delivery takes the job over
            logger.exception("import %s: could not undo or record the failure", job.pk)
        raise


@transaction.atomic
def _complete(load: ImportPass) -> ImportJob:
    """Record the tabular columns and mark the job done; request a retrain if labels came in."""
    job = load.job
    project = Project.objects.select_for_update().get(pk=job.project_id)
    if load.features and not project.columns:
        project.columns = list(load.features)
        project.save(update_fields=["columns"])
    job = load.finish(ImportJob.Status.DONE,
                      f"imported {load.rows_ok} sample(s), {load.labeled} with a label")
    project_sample_total_forget(project_id=project.pk)
    label_count = load.stage.label_counts_add()
    if load.labeled:
        ledger.retrain_if_due(project=project, label_count=label_count)
    if load.rows_ok >= ANALYZE_AFTER_ROWS and connection.vendor == "postgresql":
        transaction.on_commit(_samples_analyze)  # before the cold start's task can start
    hooks.samples_added(project_id=project.pk)  # the cold start; a no-op once a model exists
    return job


def _samples_analyze() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Sample._meta.db_table}")
    except Exception:  # the import is done; autovacuum will analyze the table later
        logger.exception("ANALYZE after an import failed")


def _purge(job: ImportJob) -> None:
    """Delete the samples the job wrote, their labels and the files it stored."""
    while True:
        ids = list(Sample.objects.filter(import_job_id=job.pk).values_list("pk", flat=True)[:5000])
        if not ids:
            break
        ledger.samples_delete(project_id=job.project_id, sample_ids=ids)
    project_sample_total_forget(project_id=job.project_id)
    folder = media_folder(job)
    try:
        _dirs, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")
