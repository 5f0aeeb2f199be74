"""The two passes over an import file: check every row, then write them in batches."""
from __future__ import annotations

import json
import random
import secrets
import zipfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from annotation import archives, images, rows
from annotation.models import ImportJob, Label, Project, Sample
from annotation.services.queue import label_counts_add

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


@dataclass(slots=True)
class NewSample:
    """A checked row on its way into the table; far cheaper to build than a model instance."""

    external_id: str
    text: str
    values: dict | None
    image: str
    thumbnail: str
    split: str
    random_key: float
    label: str
    pk: int | None = None


class _Pass:
    """Read a file row by row, parse each row for the project's kind, count and report."""

    phase = ""

    def __init__(self, job: ImportJob, progress: Progress | None,
                 features: Sequence[str] = ()) -> None:
        self.job = job
        self.project = job.project
        self.progress = progress
        self.columns = columns_from_options(job.options)
        self.labels = list(self.project.labels)
        self.batch_rows = settings.IMPORT_BATCH_ROWS
        self.max_errors = settings.IMPORT_REPORT_MAX_ERRORS
        self.errors: list[dict] = []
        self.rows_done = self.rows_ok = self.rows_bad = self.labeled = 0
        self.rows_total: int | None = None
        self.features: list[str] = list(features or self.project.columns or [])
        self.tell: Callable[[], int] = lambda: 0

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
        self.end()
        self._save_progress()

    def _read_rows(self, raw_rows: Iterator[rows.RawRow]) -> None:
        kind = self.project.kind
        max_chars = settings.IMPORT_MAX_TEXT_CHARS
        columns, labels = self.columns, self.labels
        for raw in raw_rows:
            where = {"row": raw.number, "line": raw.line}
            self.rows_done += 1
            if raw.error:
                self.bad(where, raw.error)
                continue
            try:
                if kind == Project.Kind.TEXT:
                    parsed = rows.text_row(raw.data, columns=columns, labels=labels,
                                           max_chars=max_chars)
                else:
                    if not self.features:  # JSONL into a fresh project: the first row decides
                        self.features = rows.tabular_features(list(raw.data), columns)
                        features_check(project=self.project, features=self.features)
                    parsed = rows.tabular_row(raw.data, columns=columns, labels=labels,
                                              features=self.features)
            except rows.RowError as exc:
                self.bad(where, str(exc))
                continue
            self.good(parsed.external_id, parsed.label, where, text=parsed.text,
                      values=parsed.values)

    def _read_zip(self, stream: BinaryIO) -> None:
        archive, entries = zip_open(stream)
        self.rows_total = self.rows_total or len(entries)
        self.batch_rows = min(self.batch_rows, IMAGE_BATCH_ROWS)
        from_folders = bool(self.job.options.get("labels_from_folders"))
        with archive:
            for number, entry in enumerate(entries, start=1):
                where = {"row": number, "entry": entry.name}
                self.rows_done += 1
                path = entry.path
                label = path.parent.name if from_folders and len(path.parts) > 1 else ""
                if label and label not in self.labels:
                    self.bad(where, f"unknown label {label!r} (from the folder name)")
                    continue
                try:
                    data = archives.entry_read(archive, entry,
                                               max_bytes=settings.IMPORT_MAX_IMAGE_BYTES)
                    checked = images.image_check(
                        data, formats=settings.IMPORT_IMAGE_FORMATS,
                        max_pixels=settings.MAX_IMAGE_PIXELS,
                        max_bytes=settings.IMPORT_MAX_IMAGE_BYTES)
                except (archives.ArchiveError, images.ImageRejected) as exc:
                    self.bad(where, str(exc))
                    continue
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    self.bad(where, f"the entry cannot be extracted ({exc})")
                    continue
                external_id = str(path.with_suffix(""))[:200]
                self.good(external_id, label, where, image=(data, checked))

    # rows: subclasses decide what a good row leads to

    def bad(self, where: dict, message: str) -> None:
        self.rows_bad += 1
        if len(self.errors) < self.max_errors:
            self.errors.append({**where, "error": message})
        if self.rows_done % self.batch_rows == 0:
            self._save_progress()

    def good(self, external_id: str, label: str, where: dict, *, text: str = "",
             values: dict | None = None, image: tuple | None = None) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """Called once every row was read."""

    # progress and the end

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
        ImportJob.objects.filter(pk=job.pk).update(
            phase=job.phase, rows_total=job.rows_total, rows_done=job.rows_done,
            rows_ok=job.rows_ok, rows_bad=job.rows_bad, bytes_done=job.bytes_done,
            updated_at=timezone.now(),
        )
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


class CheckPass(_Pass):
    """Check every row and write nothing; find external ids repeated in the file or project.

    Repeats within the file are found from 64-bit hashes (8 bytes and a row number per row,
    never the ids themselves; ``hash`` is stable within the process, which is all this
    needs), repeats of existing samples with one indexed query per batch.
    """

    phase = ImportJob.Phase.CHECKING

    def __init__(self, job: ImportJob, progress: Progress | None) -> None:
        super().__init__(job, progress)
        self.id_hashes = array("q")
        self.id_rows = array("I")
        self.pending_ids: list[tuple[str, dict]] = []
        # A project without external ids (say, before its first import) needs no look-ups.
        self.project_has_ids = (Sample.objects.filter(project_id=self.project.pk)
                                .exclude(external_id="").exists())

    def good(self, external_id, label, where, *, text="", values=None, image=None) -> None:
        self.rows_ok += 1
        if external_id:
            self.id_hashes.append(hash(external_id))
            self.id_rows.append(where["row"])
            self.pending_ids.append((external_id, where))
            if len(self.pending_ids) >= self.batch_rows:
                self._check_existing()
        if self.rows_done % self.batch_rows == 0:
            self._save_progress()

    def _check_existing(self) -> None:
        pending, self.pending_ids = self.pending_ids, []
        if not self.project_has_ids:
            return
        ids = [external_id for external_id, _where in pending]
        taken: set[str] = set()
        for start in range(0, len(ids), 500):
            taken.update(Sample.objects.filter(project_id=self.project.pk,
                                               external_id__in=ids[start:start + 500])
                         .values_list("external_id", flat=True))
        for external_id, where in pending:
            if external_id in taken:
                self.rows_ok -= 1
                self.bad(where, f"external id {external_id!r} is already in the project")

    def end(self) -> None:
        self._check_existing()
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


class WritePass(_Pass):
    """Write the rows the check pass accepted, one transaction per batch, tagged by the job."""

    phase = ImportJob.Phase.WRITING

    def __init__(self, job: ImportJob, progress: Progress | None, *, rows_total: int,
                 features: Sequence[str]) -> None:
        super().__init__(job, progress, features=features)
        self.rows_total = rows_total
        self.batch: list[NewSample] = []
        self.test_fraction = self.project.test_fraction

    def good(self, external_id, label, where, *, text="", values=None, image=None) -> None:
        self.rows_ok += 1
        stored_image = thumbnail = ""
        if image is not None:
            stored_image, thumbnail = self._store_image(*image)
        key = random.random()
        self.batch.append(NewSample(
            external_id=external_id, text=text, values=values, image=stored_image,
            thumbnail=thumbnail, random_key=key, label=label,
            split=Sample.Split.TEST if key < self.test_fraction else Sample.Split.POOL,
        ))
        if len(self.batch) >= self.batch_rows:
            self._flush()

    def end(self) -> None:
        self._flush()

    def _store_image(self, data: bytes, checked: images.CheckedImage) -> tuple[str, str]:
        folder, token = media_folder(self.job), secrets.token_hex(12)
        image = default_storage.save(f"{folder}/{token}.{checked.extension}", ContentFile(data))
        thumb = images.thumbnail_png(data, size=settings.THUMBNAIL_SIZE)
        thumbnail = default_storage.save(f"{folder}/{token}.thumb.png", ContentFile(thumb))
        return image, thumbnail

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        with transaction.atomic():
            samples_insert(batch, project_id=self.project.pk, job_id=self.job.pk)
            labels = [Label(sample_id=new.pk, annotator_id=self.job.user_id, value=new.label)
                      for new in batch if new.label]
            if labels:
                Label.objects.bulk_create(labels, batch_size=2000)
                self.labeled += len(labels)
            self._save_progress()
            if labels:
                test = sum(1 for new in batch if new.label and new.split == Sample.Split.TEST)
                label_counts_add(project_id=self.project.pk, labeled_pool=len(labels) - test,
                                 labeled_test=test, current_labels=len(labels))


_INSERT_COLUMNS = ("id", "project_id", "import_job_id", "external_id", "text", "values", "image",
                   "thumbnail", "split", "origin", "status", "label_count", "score", "random_key",
                   "created_at")


def samples_insert(batch: list[NewSample], *, project_id: int, job_id: int) -> None:
    """Insert samples and set their primary keys; call inside a transaction.

    Django's bulk_create spends most of its time building SQL (on SQLite, 70 rows per
    statement), so PostgreSQL gets COPY and SQLite one prepared ``executemany``; keys are
    allocated first because neither returns them.
    """
    now = timezone.now()
    vendor = connection.vendor
    origin = Sample.Origin.IMPORT
    labeled, unlabeled = Sample.Status.LABELED, Sample.Status.UNLABELED
    if vendor not in ("postgresql", "sqlite"):
        samples = Sample.objects.bulk_create([
            Sample(project_id=project_id, import_job_id=job_id, external_id=new.external_id,
                   text=new.text, values=new.values, image=new.image, thumbnail=new.thumbnail,
                   split=new.split, origin=origin, random_key=new.random_key,
                   status=labeled if new.label else unlabeled, label_count=1 if new.label else 0)
            for new in batch
        ])
        for new, sample in zip(batch, samples):
            new.pk = sample.pk
        return
    table = Sample._meta.db_table
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [table, len(batch)],
            )
            ids = [row[0] for row in cursor.fetchall()]
        else:
            # The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so nobody else can
            # take these keys; AUTOINCREMENT keys must also pass the highest ever handed out.
            cursor.execute(
                f'SELECT MAX(COALESCE((SELECT MAX(id) FROM "{table}"), 0), '
                f"COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0))",
                [table],
            )
            first = cursor.fetchone()[0] + 1
            ids = range(first, first + len(batch))
        created = now if vendor == "postgresql" else connection.ops.adapt_datetimefield_value(now)
        records = []
        for pk, new in zip(ids, batch):
            new.pk = pk
            records.append((
                pk, project_id, job_id, new.external_id, new.text,
                None if new.values is None else json.dumps(new.values), new.image,
                new.thumbnail, new.split, origin, labeled if new.label else unlabeled,
                1 if new.label else 0, 0.0,
                new.random_key, created,
            ))
        columns = ", ".join(f'"{name}"' for name in _INSERT_COLUMNS)
        if vendor == "postgresql":
            with cursor.cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
                for record in records:
                    copy.write_row(record)
        else:
            marks = ", ".join(["%s"] * len(_INSERT_COLUMNS))
            cursor.executemany(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', records)
