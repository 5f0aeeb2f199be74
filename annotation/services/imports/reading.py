"""The pass over an import file: check every row once, stage the good ones, publish or drop."""
from __future__ import annotations

import abc
import json
import logging
import marshal
import random
import re
import secrets
import tempfile
import zipfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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

logger = logging.getLogger(__name__)

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
                                              features=self.features)
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
        stored_image = thumbnail = ""
        if image is not None:
            stored_image, thumbnail = self._store_image(*image)
        self.stage.add(external_id, text, values, stored_image, thumbnail, label)

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


# --- staging: where checked rows wait until the whole file is known to be good ----------------


_TEST, _POOL = Sample.Split.TEST.value, Sample.Split.POOL.value  # plain str: marshal takes no enums


def stage_for(job: ImportJob) -> Stage:
    return CopyStage(job) if connection.vendor == "postgresql" else SpoolStage(job)


class Stage(abc.ABC):
    """Hold checked rows out of sight; ``publish`` makes them samples, leaving the context
    without it drops them. Use as a context manager around the whole pass."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.project_id = job.project_id
        self.test_fraction = job.project.test_fraction
        self.batch_rows = settings.IMPORT_BATCH_ROWS
        # Labels staged but not yet added to the project's running counts.
        self.labeled_pool = self.labeled_test = 0

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def _split(self) -> tuple[float, str]:
        key = random.random()
        return key, _TEST if key < self.test_fraction else _POOL

    def _count_label(self, split: str) -> None:
        if split == _TEST:
            self.labeled_test += 1
        else:
            self.labeled_pool += 1

    @abc.abstractmethod
    def add(self, external_id: str, text: str, values: dict | None, image: str,
            thumbnail: str, label: str) -> None:
        """Stage one checked row."""

    def flush(self) -> None:
        """End a batch: called every ``IMPORT_BATCH_ROWS`` rows read, and at the end."""

    @abc.abstractmethod
    def publish(self, written: Callable[[int], None]) -> None:
        """Make every staged row a sample; ``written(n)`` reports progress."""

    def label_counts_add(self) -> int | None:
        """Add the labels not yet counted to the project's counts; the new count, if any."""
        labels = self.labeled_pool + self.labeled_test
        if not labels:
            return None
        count = label_counts_add(project_id=self.project_id, labeled_pool=self.labeled_pool,
                                 labeled_test=self.labeled_test, current_labels=labels)
        self.labeled_pool = self.labeled_test = 0
        return count

    def progress_save(self, job_id: int, fields: dict) -> None:
        ImportJob.objects.filter(pk=job_id).update(**fields)


_COPY_NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    """Escape a value for COPY's text format (most values need nothing)."""
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


class CopyStage(Stage):
    """PostgreSQL: COPY the rows into the sample table as they are read, in one transaction.

    The transaction commits only after ``publish`` (a good file) and rolls back otherwise,
    so nobody ever sees part of a file, and a dead worker's rows vanish with its connection.
    COPY streams while the file is still being read, so the server's index work overlaps
    our parsing. Progress saved from inside the transaction would stay invisible (and keep
    the job looking stale), so it goes through a connection of its own, in a worker thread,
    until ``publish``.
    """

    # Constant columns first, so that each batch formats them once.
    SAMPLE_COLUMNS = ("project_id", "import_job_id", "origin", "score", "created_at", "id",
                      "split", "status", "label_count", "random_key", "external_id", "text",
                      "values", "image", "thumbnail")

    def __init__(self, job: ImportJob) -> None:
        super().__init__(job)
        self.table = Sample._meta.db_table
        self.id_limit = job.bytes_total // 2 + 1  # a row has 2 bytes or more
        self.atomic = transaction.atomic()
        self.progress_thread: ThreadPoolExecutor | None = None
        self.cursor = None
        self.copying = None  # the context manager of the open COPY, if any
        self.copy = None
        self.ids: list[int] = []
        self.used = 0
        self.lines: list[str] = []
        self.labels: list[tuple[int, str]] = []
        self.published = False

    def __enter__(self) -> CopyStage:
        self.atomic.__enter__()
        self.cursor = connection.cursor()
        self.progress_thread = ThreadPoolExecutor(max_workers=1,
                                                  thread_name_prefix=f"import-{self.job.pk}")
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self.flush()
                if not self.published:
                    transaction.set_rollback(True)
            elif self.copy is not None:
                self.copying.__exit__(exc_type, exc, traceback)  # aborts the COPY
            self.cursor.close()
        finally:
            self._progress_stop()
            self.atomic.__exit__(exc_type, exc, traceback)

    def _begin(self) -> None:
        """Open a COPY, taking keys first if none are left (ours alone: keys follow the file)."""
        if self.used == len(self.ids):
            want = max(1, min(self.batch_rows, self.id_limit))
            self.cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [self.table, want])
            self.ids, self.used = [row[0] for row in self.cursor.fetchall()], 0
            self.id_limit -= want
        now = timezone.now().isoformat()
        self.head = f"{self.project_id}\t{self.job.pk}\t{Sample.Origin.IMPORT}\t0\t{now}\t"
        columns = ", ".join(f'"{name}"' for name in self.SAMPLE_COLUMNS)
        self.copying = self.cursor.cursor.copy(f'COPY "{self.table}" ({columns}) FROM STDIN')
        self.copy = self.copying.__enter__()

    def add(self, external_id, text, values, image, thumbnail, label) -> None:
        if self.copy is None:
            self._begin()
        pk = self.ids[self.used]
        self.used += 1
        key, split = self._split()
        if label:
            status, count = Sample.Status.LABELED, 1
            self.labels.append((pk, label))
            self._count_label(split)
        else:
            status, count = Sample.Status.UNLABELED, 0
        values = _COPY_NULL if values is None else _copy_text(json.dumps(values))
        self.lines.append(
            f"{self.head}{pk}\t{split}\t{status}\t{count}\t{key!r}\t{_copy_text(external_id)}\t"
            f"{_copy_text(text)}\t{values}\t{_copy_text(image)}\t{_copy_text(thumbnail)}\n")
        if len(self.lines) >= 1000:  # small writes keep the server busy while we parse on
            self.copy.write("".join(self.lines))
            self.lines = []
        if self.used == len(self.ids):
            self.flush()

    def flush(self) -> None:
        if self.copy is None:
            return
        if self.lines:
            self.copy.write("".join(self.lines))
            self.lines = []
        copying, self.copying, self.copy = self.copying, None, None
        copying.__exit__(None, None, None)
        labels, self.labels = self.labels, []
        if labels:
            now = timezone.now().isoformat()
            user = self.job.user_id
            with self.cursor.cursor.copy(
                    f'COPY "{Label._meta.db_table}" ("sample_id", "annotator_id", "value", '
                    f'"created_at") FROM STDIN') as copy:
                copy.write("".join(f"{pk}\t{user}\t{_copy_text(value)}\t{now}\n"
                                   for pk, value in labels))

    def publish(self, written: Callable[[int], None]) -> None:
        self.flush()
        self._progress_stop()  # from here on the job row is written by this transaction
        # Check the foreign keys of the COPYed rows now (a few seconds per million rows), not
        # at commit, where they would hold up label writers waiting for the counter row.
        self.cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        self.cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        self.published = True

    def progress_save(self, job_id: int, fields: dict) -> None:
        if self.progress_thread is None:
            super().progress_save(job_id, fields)
        else:
            self.progress_thread.submit(_progress_save_apart, job_id, fields)

    def _progress_stop(self) -> None:
        if self.progress_thread is not None:
            self.progress_thread.submit(_connection_close)
            self.progress_thread.shutdown(wait=True)
            self.progress_thread = None


def _connection_close() -> None:
    connection.close()  # looked up in the calling thread: closes that thread's own connection


def _progress_save_apart(job_id: int, fields: dict) -> None:
    try:
        ImportJob.objects.filter(pk=job_id).update(**fields)
    except Exception:  # progress is a courtesy; the import goes on
        logger.exception("import %s: could not save progress", job_id)


class SpoolStage(Stage):
    """SQLite and others: spool the rows to a temporary file, then write them in batches.

    Each batch commits on its own, so SQLite writers are not locked out for the length of a
    large import; if writing fails, the caller deletes the batches written so far.
    """

    def __init__(self, job: ImportJob) -> None:
        super().__init__(job)
        self.file = None
        self.batch: list[tuple] = []
        self.batches = 0

    def __enter__(self) -> SpoolStage:
        self.file = tempfile.TemporaryFile(prefix=f"import-{self.job.pk}-")
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()

    def add(self, external_id, text, values, image, thumbnail, label) -> None:
        key, split = self._split()
        self.batch.append((external_id, text, values, image, thumbnail, split, key, label))

    def flush(self) -> None:
        if self.batch:
            marshal.dump(self.batch, self.file)  # our own file, read back by us only
            self.batch = []
            self.batches += 1

    def publish(self, written: Callable[[int], None]) -> None:
        self.flush()
        self.file.seek(0)
        for _ in range(self.batches):
            batch = marshal.load(self.file)
            with transaction.atomic():
                ids = samples_insert(batch, project_id=self.project_id, job_id=self.job.pk)
                labels = [Label(sample_id=pk, annotator_id=self.job.user_id, value=row[7])
                          for pk, row in zip(ids, batch) if row[7]]
                if labels:
                    Label.objects.bulk_create(labels, batch_size=2000)
                    for pk, row in zip(ids, batch):
                        if row[7]:
                            self._count_label(row[5])
                written(len(batch))
                self.label_counts_add()


_INSERT_COLUMNS = ("id", "project_id", "import_job_id", "external_id", "text", "values", "image",
                   "thumbnail", "split", "origin", "status", "label_count", "score", "random_key",
                   "created_at")


def samples_insert(batch: list[tuple], *, project_id: int, job_id: int) -> list[int]:
    """Insert spooled rows as samples and return their keys; call inside a transaction.

    A row is (external_id, text, values, image, thumbnail, split, random_key, label).
    Django's bulk_create spends most of its time building SQL (on SQLite, 70 rows per
    statement), so SQLite gets one prepared ``executemany``, with keys allocated first.
    """
    origin = Sample.Origin.IMPORT
    labeled, unlabeled = Sample.Status.LABELED, Sample.Status.UNLABELED
    if connection.vendor != "sqlite":
        samples = Sample.objects.bulk_create([
            Sample(project_id=project_id, import_job_id=job_id, external_id=external_id,
                   text=text, values=values, image=image, thumbnail=thumbnail, split=split,
                   origin=origin, random_key=key, status=labeled if label else unlabeled,
                   label_count=1 if label else 0)
            for external_id, text, values, image, thumbnail, split, key, label in batch
        ])
        return [sample.pk for sample in samples]
    table = Sample._meta.db_table
    created = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        # The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so nobody else can
        # take these keys; AUTOINCREMENT keys must also pass the highest ever handed out.
        cursor.execute(
            f'SELECT MAX(COALESCE((SELECT MAX(id) FROM "{table}"), 0), '
            f"COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0))",
            [table],
        )
        first = cursor.fetchone()[0] + 1
        ids = list(range(first, first + len(batch)))
        records = [
            (pk, project_id, job_id, external_id, text,
             None if values is None else json.dumps(values), image, thumbnail, split, origin,
             labeled if label else unlabeled, 1 if label else 0, 0.0, key, created)
            for pk, (external_id, text, values, image, thumbnail, split, key, label)
            in zip(ids, batch)
        ]
        columns = ", ".join(f'"{name}"' for name in _INSERT_COLUMNS)
        marks = ", ".join(["%s"] * len(_INSERT_COLUMNS))
        cursor.executemany(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', records)
    return ids
