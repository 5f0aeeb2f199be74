"""Import jobs: create one from an upload or a path, run it, undo what a failed one wrote."""
from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from annotation import hooks
from annotation import archives, rows
from annotation.errors import InvalidImport
from annotation.models import ImportJob, Label, Project, Sample
from annotation.services.imports.reading import (
    ImportPass,
    Progress,
    columns_from_options,
    header_check,
    media_folder,
    zip_open,
)
from annotation.services.projects import SCIENCE_ROLES, member_require
from annotation.selectors import project_sample_total_forget
from annotation.services.queue import label_counts_add

logger = logging.getLogger(__name__)

FORMAT_BY_SUFFIX = {
    ".csv": ImportJob.Format.CSV,
    ".jsonl": ImportJob.Format.JSONL,
    ".ndjson": ImportJob.Format.JSONL,
    ".zip": ImportJob.Format.ZIP,
}
FORMATS_BY_KIND = {
    Project.Kind.IMAGE: (ImportJob.Format.ZIP,),
    Project.Kind.TEXT: (ImportJob.Format.CSV, ImportJob.Format.JSONL),
    Project.Kind.TABULAR: (ImportJob.Format.CSV, ImportJob.Format.JSONL),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
OPTION_NAMES = ("id_column", "label_column", "text_column", "labels_from_folders")
# A running job whose progress has not moved for this long belongs to a dead worker.
STALE_AFTER = dt.timedelta(minutes=5)


# --- creating a job -------------------------------------------------------------------------


def import_format_for(*, project: Project, filename: str) -> str:
    """Return the import format of ``filename`` or raise InvalidImport for this project."""
    suffix = PurePosixPath(filename.lower()).suffix
    fmt = FORMAT_BY_SUFFIX.get(suffix)
    allowed = FORMATS_BY_KIND[project.kind]
    if fmt not in allowed:
        names = ", ".join(f".{f}" for f in allowed)
        extra = " or image files" if project.kind == Project.Kind.IMAGE else ""
        raise InvalidImport(
            f"{project.kind} projects import {names}{extra} files, not {filename!r}")
    return fmt


def _options(options: dict | None) -> dict:
    options = {k: v for k, v in (options or {}).items() if k in OPTION_NAMES and v not in (None, "")}
    for key in ("id_column", "label_column", "text_column"):
        if key in options:
            options[key] = str(options[key]).strip()
    return options


def _precheck(*, project: Project, fmt: str, stream: BinaryIO, options: dict) -> None:
    """Check what can be checked without reading every row: header, archive directory."""
    try:
        if fmt == ImportJob.Format.CSV:
            header_check(project=project, header=rows.csv_header(stream),
                         columns=columns_from_options(options))
        elif fmt == ImportJob.Format.ZIP:
            archive, _entries = zip_open(stream)
            archive.close()
    except (rows.FileError, archives.ArchiveError) as exc:
        raise InvalidImport(str(exc)) from None
    finally:
        stream.seek(0)


def _size_of(upload: File) -> int:
    size = upload.size
    if size > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise InvalidImport(
            f"{upload.name!r} has {size} bytes, more than {settings.IMPORT_MAX_UPLOAD_BYTES}")
    return size


def _pack_images(uploads: Sequence[File]) -> tempfile.SpooledTemporaryFile:
    """Pack uploaded image files into one stored (uncompressed) .zip, checking each file."""
    if len(uploads) > settings.IMPORT_MAX_ZIP_ENTRIES:
        raise InvalidImport(
            f"{len(uploads)} files, more than {settings.IMPORT_MAX_ZIP_ENTRIES} per import")
    packed = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
    with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for upload in uploads:
            name = os.path.basename(upload.name or "").strip() or "image"
            if not name.lower().endswith(IMAGE_SUFFIXES):
                raise InvalidImport(f"{name!r} is not an image file "
                                    f"({', '.join(IMAGE_SUFFIXES)})")
            if upload.size > settings.IMPORT_MAX_IMAGE_BYTES:
                raise InvalidImport(f"{name!r} has {upload.size} bytes, "
                                    f"more than {settings.IMPORT_MAX_IMAGE_BYTES}")
            with archive.open(name, "w") as member:
                for chunk in upload.chunks():
                    member.write(chunk)
    packed.seek(0)
    return packed


@transaction.atomic
def import_job_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    upload: File | None = None,
    image_files: Sequence[File] = (),
    options: dict | None = None,
) -> ImportJob:
    """Store an uploaded file (or pack uploaded images into a .zip) as a queued import job.

    Refuses with InvalidImport, before anything is stored, a file of the wrong format for
    the project, a file over the size limit, a CSV header without the needed columns and an
    unsafe or oversized archive.
    """
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    options = _options(options)
    if image_files and project.kind != Project.Kind.IMAGE:
        raise InvalidImport(f"image files go into image projects, not a {project.kind} project")
    if len(image_files) == 1 and image_files[0].name.lower().endswith(".zip"):
        upload, image_files = image_files[0], ()
    if upload is not None and upload.name.lower().endswith(IMAGE_SUFFIXES):
        upload, image_files = None, [upload]
    if upload is None and not image_files:
        raise InvalidImport("choose a file to import")
    if image_files:
        fmt, original = ImportJob.Format.ZIP, f"{len(image_files)} image file(s)"
        for image in image_files:
            _size_of(image)
        upload = File(_pack_images(image_files), name="images.zip")
        upload.size = upload.file.seek(0, os.SEEK_END)
        upload.file.seek(0)
    else:
        fmt, original = import_format_for(project=project, filename=upload.name), upload.name
    size = _size_of(upload)
    _precheck(project=project, fmt=fmt, stream=upload, options=options)
    job = ImportJob(project=project, user=user, format=fmt, options=options,
                    original_name=os.path.basename(original)[:255], bytes_total=size)
    job.file.save(f"{secrets.token_hex(8)}.{fmt}", upload, save=False)
    job.save()
    return job


@transaction.atomic
def import_job_create_from_path(
    *, project: Project, user: AbstractBaseUser, path: str, options: dict | None = None
) -> ImportJob:
    """Create a job that reads ``path`` in place (the import_samples command)."""
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    options = _options(options)
    fmt = import_format_for(project=project, filename=path)
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            _precheck(project=project, fmt=fmt, stream=stream, options=options)
    except OSError as exc:
        raise InvalidImport(f"cannot read {path!r}: {exc.strerror}") from None
    return ImportJob.objects.create(
        project=project, user=user, format=fmt, options=options,
        original_name=os.path.basename(path)[:255], bytes_total=size,
    )


def import_job_start(*, job: ImportJob) -> ImportJob:
    """Run a small import right away, or queue a large one for a Celery worker.

    Returns the job as it is now: finished for a small file, queued for a large one.
    """
    if job.bytes_total <= settings.IMPORT_INLINE_MAX_BYTES:
        return import_job_run(job_id=job.pk)
    from annotation.tasks import import_job_run_task

    transaction.on_commit(lambda: import_job_run_task.delay(job.pk))
    return job


# --- running a job --------------------------------------------------------------------------


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
        hooks.labels_added(project=project, label_count=label_count)
    hooks.samples_added(project_id=project.pk)  # the cold start; a no-op once a model exists
    return job


def _purge(job: ImportJob) -> None:
    """Delete the samples the job wrote, their labels and the files it stored."""
    while True:
        ids = list(Sample.objects.filter(import_job_id=job.pk).values_list("pk", flat=True)[:5000])
        if not ids:
            break
        with transaction.atomic():
            labeled = dict(
                Sample.objects.filter(pk__in=ids).labeled().order_by().values("split")
                .annotate(n=Count("pk")).values_list("split", "n")
            )
            labels, _ = Label.objects.filter(sample_id__in=ids, superseded_at__isnull=True).delete()
            Label.objects.filter(sample_id__in=ids).delete()
            Sample.objects.filter(pk__in=ids).delete()
            label_counts_add(project_id=job.project_id, current_labels=-labels,
                             labeled_pool=-labeled.get(Sample.Split.POOL, 0),
                             labeled_test=-labeled.get(Sample.Split.TEST, 0))
    project_sample_total_forget(project_id=job.project_id)
    folder = media_folder(job)
    try:
        _dirs, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")
