"""The pass that reads an import file once: header and archive checks, every row checked, staged."""
from __future__ import annotations

import secrets
import zipfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from annotation import archives, images, rows
from annotation.models import ImportJob, Project, Sample
from annotation.services.imports.staging import stage_for

Progress = Callable[[ImportJob], None]
IMAGE_BATCH_ROWS = 200


def columns_from_options(options: dict) -> rows.Columns:
    return rows.Columns(
        id=options.get("id_column", "external_id"),
        label=options.get("label_column", "label"),
        text=options.get("text_column", "text"),
    )


def header_check(*, project: Project, header: Sequence[str], columns: rows.Columns) -> list[str]:
    """Return the tabular feature columns of ``header``; refuse a header missing what it needs."""
    if project.kind == Project.Kind.TEXT:
        if columns.text not in header:
            raise rows.FileError(f"the CSV header has no {columns.text!r} column "
                                 f"(it has {', '.join(header)})")
        return []
    features = rows.tabular_features(header, columns)
    if not features:
        raise rows.FileError("the CSV file has no feature columns")
    features_check(project=project, features=features)
    return features


def features_check(*, project: Project, features: Sequence[str]) -> None:
    """Refuse tabular columns that differ from the ones the project already has."""
    if project.columns and set(features) != set(project.columns):
        missing = sorted(set(project.columns) - set(features))
        extra = sorted(set(features) - set(project.columns))
        raise rows.FileError(
            "the columns differ from the project's"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unexpected: {', '.join(extra)}" if extra else ""))


def zip_open(stream: BinaryIO):
    return archives.zip_entries(
        stream,
        max_entries=settings.IMPORT_MAX_ZIP_ENTRIES,
        max_total_bytes=settings.IMPORT_MAX_ZIP_BYTES,
    )


def media_folder(job: ImportJob) -> str:
    """Return the storage folder of the job's images: deleting it undoes them."""
    return f"samples/{job.project_id}/import-{job.pk}"


class ImportPass:
    """Read a file once: check every row, report the bad ones, stage the good ones.

    Staging (``stage_for``) keeps the rows out of sight until the whole file is known to be
    good; once a row is bad nothing more is staged, but the rest is still read so the report
    names every bad row. Repeats within the file are found from 64-bit hashes (8 bytes and a
    row number per row, never the ids themselves; ``hash`` is stable within the process,
    which is all this needs), repeats of existing samples with one indexed query per batch.
    """

    def __init__(self, job: ImportJob, progress: Progress | None) -> None:
        self.job = job
        self.project = job.project
        self.progress = progress
        self.phase = ImportJob.Phase.CHECKING
        self.columns = columns_from_options(job.options)
        self.labels = list(self.project.labels)
        self.batch_rows = settings.IMPORT_BATCH_ROWS
        self.max_errors = settings.IMPORT_REPORT_MAX_ERRORS
        self.errors: list[dict] = []
        self.rows_done = self.rows_ok = self.rows_bad = self.labeled = 0
        self.rows_total: int | None = None
        self.features: list[str] = list(self.project.columns or [])
        self.tell: Callable[[], int] = lambda: 0
        self.id_hashes = array("q")
        self.id_rows = array("I")
        self.pending_ids: list[tuple[str, dict]] = []
        # A project without external ids (say, before its first import) needs no look-ups.
        self.project_has_ids = (Sample.objects.filter(project_id=self.project.pk)
                                .exclude(external_id="").exists())
        self.stage = stage_for(job)

    # reading

    def read(self, stream: BinaryIO) -> None:
        self.tell = stream.tell
        self._save_progress()
        fmt = self.job.format
        if fmt == ImportJob.Format.ZIP:
            self._read_zip(stream)
        else:
            if fmt == ImportJob.Format.CSV:
                header = rows.csv_header(stream)
                stream.seek(0)
                features = header_check(project=self.project, header=header, columns=self.columns)
                self.features = features or self.features
                raw_rows = rows.csv_rows(stream)
            else:
                raw_rows = rows.jsonl_rows(stream)
            self._read_rows(raw_rows)
        self._batch_end()
        self._check_repeats()
        self._save_progress()

    def _read_rows(self, raw_rows: Iterator[rows.RawRow]) -> None:
        text_kind = self.project.kind == Project.Kind.TEXT
        max_chars = settings.IMPORT_MAX_TEXT_CHARS
        columns, labels, batch_rows = self.columns, self.labels, self.batch_rows
        # A CSV row's keys are the header's, checked once (header_check) for every row.
        keys_checked = self.job.format == ImportJob.Format.CSV
        for raw in raw_rows:
            self.rows_done += 1
            try:
                if raw.error:
                    raise rows.RowError(raw.error)
                if text_kind:
                    parsed = rows.text_row(raw.data, columns=columns, labels=labels,
                                           max_chars=max_chars)
                else:
                    if not self.features:  # JSONL into a fresh project: the first row decides
                        self.features = rows.tabular_features(list(raw.data), columns)
                        features_check(project=self.project, features=self.features)
                    parsed = rows.tabular_row(raw.data, columns=columns, labels=labels,
                                              features=self.features,
                                              keys_checked=keys_checked)
            except rows.RowError as exc:
                self.bad({"row": raw.number, "line": raw.line}, str(exc))
            else:
                self.good(parsed.external_id, parsed.label, (raw.number, "line", raw.line),
                          text=parsed.text, values=parsed.values)
            if self.rows_done % batch_rows == 0:
                self._batch_end()

    def _read_zip(self, stream: BinaryIO) -> None:
        archive, entries = zip_open(stream)
        self.rows_total = len(entries)
        self.batch_rows = min(self.batch_rows, IMAGE_BATCH_ROWS)
        from_folders = bool(self.job.options.get("labels_from_folders"))
        with archive:
            for number, entry in enumerate(entries, start=1):
                self.rows_done += 1
                self._read_entry(archive, entry, number, from_folders)
                if self.rows_done % self.batch_rows == 0:
                    self._batch_end()

    def _read_entry(self, archive, entry, number: int, from_folders: bool) -> None:
        where = {"row": number, "entry": entry.name}
        path = entry.path
        label = path.parent.name if from_folders and len(path.parts) > 1 else ""
        if label and label not in self.labels:
            self.bad(where, f"unknown label {label!r} (from the folder name)")
            return
        try:
            data = archives.entry_read(archive, entry, max_bytes=settings.IMPORT_MAX_IMAGE_BYTES)
            checked = images.image_check(
                data, formats=settings.IMPORT_IMAGE_FORMATS,
                max_pixels=settings.MAX_IMAGE_PIXELS, max_bytes=settings.IMPORT_MAX_IMAGE_BYTES)
        except (archives.ArchiveError, images.ImageRejected) as exc:
            self.bad(where, str(exc))
            return
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            self.bad(where, f"the entry cannot be extracted ({exc})")
            return
        self.good(str(path.with_suffix(""))[:200], label, (number, "entry", entry.name),
                  image=(data, checked))

    # rows

    def bad(self, where: dict, message: str) -> None:
        self.rows_bad += 1
        if len(self.errors) < self.max_errors:
            self.errors.append({**where, "error": message})

    def good(self, external_id: str, label: str, where: tuple, *, text: str = "",
             values: dict | None = None, image: tuple | None = None) -> None:
        """Count a checked row and stage it; ``where`` is (row, "line" or "entry", value)."""
        self.rows_ok += 1
        if external_id:
            self.id_hashes.append(hash(external_id))
            self.id_rows.append(where[0])
            if self.project_has_ids:
                self.pending_ids.append((external_id, where))
        if self.rows_bad:
            return  # the file is refused: staging more is wasted work
        if label:
            self.labeled += 1
        stored_image = thumbnail = digest = ""
        if image is not None:
            stored_image, thumbnail = self._store_image(*image)
            digest = images.content_sha256(image[0])
        self.stage.add(external_id, text, values, stored_image, thumbnail, label, digest)

    def _store_image(self, data: bytes, checked: images.CheckedImage) -> tuple[str, str]:
        folder, token = media_folder(self.job), secrets.token_hex(12)
        image = default_storage.save(f"{folder}/{token}.{checked.extension}", ContentFile(data))
        thumb = images.thumbnail_png(data, size=settings.THUMBNAIL_SIZE)
        thumbnail = default_storage.save(f"{folder}/{token}.thumb.png", ContentFile(thumb))
        return image, thumbnail

    def _batch_end(self) -> None:
        self.stage.flush()
        self._check_existing()
        self._save_progress()

    def _check_existing(self) -> None:
        pending, self.pending_ids = self.pending_ids, []
        if not pending:
            return
        ids = [external_id for external_id, _where in pending]
        taken: set[str] = set()
        # The import's own rows may already be in the table, inside its transaction.
        existing = Sample.objects.filter(project_id=self.project.pk).exclude(import_job_id=self.job.pk)
        for start in range(0, len(ids), 500):
            taken.update(existing.filter(external_id__in=ids[start:start + 500])
                         .values_list("external_id", flat=True))
        for external_id, (row, key, value) in pending:
            if external_id in taken:
                self.rows_ok -= 1
                self.bad({"row": row, key: value},
                         f"external id {external_id!r} is already in the project")

    def _check_repeats(self) -> None:
        if len(self.id_hashes) < 2:
            return
        hashes = np.frombuffer(self.id_hashes, dtype=np.int64)
        row_numbers = np.frombuffer(self.id_rows, dtype=np.uint32)
        order = np.lexsort((row_numbers, hashes))
        hashes, row_numbers = hashes[order], row_numbers[order]
        repeated = np.flatnonzero(hashes[1:] == hashes[:-1]) + 1
        first_of, group_hash, group_first = {}, None, 0
        for index in repeated:  # sorted: the first repeat of a group follows the group's first
            if hashes[index] != group_hash:
                group_hash, group_first = hashes[index], int(row_numbers[index - 1])
            first_of[int(row_numbers[index])] = group_first
        for row, first in sorted(first_of.items()):
            self.rows_ok -= 1
            self.bad({"row": row}, f"duplicate external id (the same as row {first})")

    # the outcome

    def publish(self) -> None:
        """Make the staged rows samples (the writing phase); call only for a good file."""
        self.phase = ImportJob.Phase.WRITING
        self.rows_total, self.rows_done = self.rows_ok, 0

        def written(n: int) -> None:
            self.rows_done += n
            self._save_progress()

        self.stage.publish(written)
        self.rows_done = self.rows_ok

    def _save_progress(self) -> None:
        job = self.job
        try:
            position = self.tell()
        except (OSError, ValueError):
            position = job.bytes_done
        job.phase = self.phase
        job.rows_total = self.rows_total
        job.rows_done, job.rows_ok, job.rows_bad = self.rows_done, self.rows_ok, self.rows_bad
        job.bytes_done = min(position, job.bytes_total) if job.bytes_total else 0
        self.stage.progress_save(job.pk, {
            "phase": job.phase, "rows_total": job.rows_total, "rows_done": job.rows_done,
            "rows_ok": job.rows_ok, "rows_bad": job.rows_bad, "bytes_done": job.bytes_done,
            "updated_at": timezone.now(),
        })
        if self.progress is not None:
            self.progress(job)

    def finish(self, status: str, message: str) -> ImportJob:
        """Record the outcome and the report (bad rows in file order, capped, with a count)."""
        job = self.job
        job.status = status
        job.phase = self.phase
        job.rows_total = self.rows_total if self.rows_total is not None else self.rows_done
        job.rows_done, job.rows_ok, job.rows_bad = self.rows_done, self.rows_ok, self.rows_bad
        if status == ImportJob.Status.DONE:
            job.bytes_done = job.bytes_total
        errors = sorted(self.errors, key=lambda error: error["row"])[: self.max_errors]
        job.report = {"message": message, "errors": errors,
                      "truncated": self.rows_bad > len(errors)}
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "phase", "rows_total", "rows_done", "rows_ok",
                                "rows_bad", "bytes_done", "report", "finished_at", "updated_at"])
        if self.progress is not None:
            self.progress(job)
        return job
