"""Creating import jobs: the file's format and options, the checks before storing, images packed."""
from __future__ import annotations

import os
import secrets
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.db import transaction

from annotation import archives, rows
from annotation.errors import InvalidImport
from annotation.models import ImportJob, Project
from annotation.services.imports.reading import columns_from_options, header_check, zip_open
from annotation.access import SCIENCE_ROLES, member_require
from core.text import text_problem

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


def _name_check(filename: str) -> None:
    """Refuse a file name the database could not store as the job's original name."""
    problem = text_problem(filename)
    if problem is not None:
        raise InvalidImport(f"the file name {filename!r} {problem}")


def import_format_for(*, project: Project, filename: str) -> str:
    """Return the import format of ``filename`` or raise InvalidImport for this project."""
    _name_check(filename)
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
            _name_check(name)
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
