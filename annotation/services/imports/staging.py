"""Where checked rows wait out of sight until the file is known good: PostgreSQL COPY or a spool."""
from __future__ import annotations

import abc
import json
import logging
import marshal
import random
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import ImportJob, Label, Sample
from annotation.services import ledger

logger = logging.getLogger(__name__)

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
            thumbnail: str, label: str, digest: str = "") -> None:
        """Stage one checked row (``digest``: an image's content sha256)."""

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
        count = ledger.label_counts_add(project_id=self.project_id,
                                        labeled_pool=self.labeled_pool,
                                        labeled_test=self.labeled_test, current_labels=labels)
        self.labeled_pool = self.labeled_test = 0
        return count

    def progress_save(self, job_id: int, fields: dict) -> None:
        ImportJob.objects.filter(pk=job_id).update(**fields)


_COPY_NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _values_json(values: dict) -> str:
    """The row's values as JSON text: orjson (several times faster than ``json``); an
    integer past 64 bits, which orjson refuses, goes through ``json``."""
    try:
        return orjson.dumps(values).decode()
    except TypeError:
        return json.dumps(values)


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
                      "values", "image", "thumbnail", "content_sha256")

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

    def add(self, external_id, text, values, image, thumbnail, label, digest="") -> None:
        if self.copy is None:
            self._begin()
        pk = self.ids[self.used]
        self.used += 1
        key, split = self._split()
        status, count = ledger.new_sample_state(labeled=bool(label))
        if label:
            self.labels.append((pk, label))
            self._count_label(split)
        values = _COPY_NULL if values is None else _copy_text(_values_json(values))
        self.lines.append(
            f"{self.head}{pk}\t{split}\t{status}\t{count}\t{key!r}\t{_copy_text(external_id)}\t"
            f"{_copy_text(text)}\t{values}\t{_copy_text(image)}\t{_copy_text(thumbnail)}\t"
            f"{digest}\n")
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

    def add(self, external_id, text, values, image, thumbnail, label, digest="") -> None:
        key, split = self._split()
        self.batch.append((external_id, text, values, image, thumbnail, split, key, label,
                           digest))

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
                   "created_at", "content_sha256")


def samples_insert(batch: list[tuple], *, project_id: int, job_id: int) -> list[int]:
    """Insert spooled rows as samples and return their keys; call inside a transaction.

    A row is (external_id, text, values, image, thumbnail, split, random_key, label, digest).
    Django's bulk_create spends most of its time building SQL (on SQLite, 70 rows per
    statement), so SQLite gets one prepared ``executemany``, with keys allocated first.
    """
    origin = Sample.Origin.IMPORT
    labeled, unlabeled = (ledger.new_sample_state(labeled=True),
                          ledger.new_sample_state(labeled=False))
    if connection.vendor != "sqlite":
        def sample(external_id, text, values, image, thumbnail, split, key, label,
                   digest) -> Sample:
            status, label_count = labeled if label else unlabeled
            return Sample(project_id=project_id, import_job_id=job_id, external_id=external_id,
                          text=text, values=values, image=image, thumbnail=thumbnail,
                          split=split, origin=origin, random_key=key, status=status,
                          label_count=label_count, content_sha256=digest)

        samples = Sample.objects.bulk_create([sample(*row) for row in batch])
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
             *(labeled if label else unlabeled), 0.0, key, created, digest)
            for pk, (external_id, text, values, image, thumbnail, split, key, label, digest)
            in zip(ids, batch)
        ]
        columns = ", ".join(f'"{name}"' for name in _INSERT_COLUMNS)
        marks = ", ".join(["%s"] * len(_INSERT_COLUMNS))
        cursor.executemany(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', records)
    return ids
