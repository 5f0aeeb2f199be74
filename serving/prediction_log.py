"""Record prediction logs in bulk, off the request's critical path.

A request hands over one small :class:`RequestLog` (plain values, no model instances),
which becomes parameter tuples of strings and numbers at once; a writer thread per process
inserts the buffered rows with one ``executemany`` per batch, every
``PREDICTION_LOG_FLUSH_SECONDS``. Building Django model instances and going through
``bulk_create`` cost about 25 µs per row, more than the rest of a 100-row request per row;
the raw insert costs a few.

Why rows and not the logs themselves wait in the buffer: a second of 100-row requests is
tens of thousands of predictions, instances and dicts, all seen by the garbage collector,
whose full collections then took hundreds of milliseconds (the 100-row p95 of half a
second). Tuples of strings and numbers drop out of the collector's sight after their first
collection, and kept instances wait as JSON text.

One buffer holds every project's rows, so one bad row must not cost the others theirs
(feedback by their ids would then answer 404). Each batch is inserted under a savepoint;
a batch the database refuses is split in halves until the bad rows stand alone, and each
of those is stored repaired (text the database refuses replaced with U+FFFD, then without
its instance), with a ``note`` saying what changed. Rows whose token or model version was
deleted meanwhile are stored without it; only rows of a deleted project are not stored.
A flush that fails as a whole (the database is down) puts its rows back in the buffer,
up to ``MAX_BUFFERED_ROWS``.

Each request also leaves one small summary tuple (``serving.rollups.request_summary``);
the flush adds its rows and summaries to the per-minute rollups in the same transaction
(``serving/rollups.py``). Requests refused before their project is known leave only a
summary (``prediction_refused_record``): counted, with nothing of the request stored. With
``PREDICTION_ROLLUPS`` off, no summaries are kept and flushes write the raw rows only.
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import multiprocessing.util
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import attrgetter
from dataclasses import dataclass
from typing import Protocol

import orjson
from django.conf import settings
from django.db import DataError, IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from core.text import json_sanitize, text_sanitize
from annotation.models import ApiToken, Project
from learning.models import ModelVersion
from serving.models import PredictionLog
from serving.rollups import Known, request_summary, rollups_add

logger = logging.getLogger(__name__)

BATCH_ROWS = 1000
# Rows kept for a later flush while the database cannot take them; the oldest go first.
MAX_BUFFERED_ROWS = 200_000
# Errors a row's values can cause; anything else (a lost connection) fails the flush.
_ROW_ERRORS = (DataError, IntegrityError, ValueError, TypeError)


class LoggedPrediction(Protocol):
    id: str  # canonical UUID text
    label: str
    confidence: float


@dataclass(slots=True)
class RequestLog:
    """One API request's log: a row per prediction, or one row for a failed request.

    ``instances`` runs parallel to ``predictions``: the raw instance to keep on each row for
    later feedback (or its JSON, as bytes), or None where it is too large (or not wanted).
    """

    project_id: int
    token_id: int | None
    status_code: int
    latency_ms: float
    created_at: dt.datetime
    model_version_id: int | None = None
    predictions: Sequence[LoggedPrediction] = ()
    instances: Sequence[object] | None = None


_COLUMNS = ("project_id", "model_version_id", "token_id", "prediction_id", "outcome",
            "status_code", "latency_ms", "predicted_label", "confidence", "created_at",
            "instance", "true_label", "note")
_PROJECT, _VERSION, _TOKEN, _PREDICTION_ID = 0, 1, 2, 3
_PREDICTED, _INSTANCE, _TRUE, _NOTE = 7, 10, 11, 12


def _columns() -> str:
    """The table's columns in ``_COLUMNS`` order, quoted, comma-separated."""
    quote = connection.ops.quote_name
    return ", ".join(quote(PredictionLog._meta.get_field(name.removesuffix("_id")).column
                           if name.endswith("_id") and name != "prediction_id"
                           else PredictionLog._meta.get_field(name).column) for name in _COLUMNS)


def _insert_sql() -> str:
    return (f"INSERT INTO {connection.ops.quote_name(PredictionLog._meta.db_table)} "
            f"({_columns()}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})")


def _outcome(status_code: int) -> str:
    """The outcome as a plain string: an enum member would keep its rows in the collector's
    sight (a tuple leaves it only when everything it holds is untracked)."""
    if status_code < 400:
        return PredictionLog.Outcome.OK.value
    if status_code < 500:
        return PredictionLog.Outcome.CLIENT_ERROR.value
    return PredictionLog.Outcome.SERVER_ERROR.value


def _rows(logs: Sequence[RequestLog]) -> list[tuple]:
    """Turn request logs into parameter tuples for the current connection's backend."""
    ops = connection.ops
    native_uuid = connection.features.has_native_uuid_field
    rows = []
    for log in logs:
        created = ops.adapt_datetimefield_value(log.created_at)  # once per request
        outcome = _outcome(log.status_code)
        if not log.predictions or log.status_code >= 400:
            rows.append((log.project_id, None, log.token_id, None, outcome, log.status_code,
                         log.latency_ms, "", None, created, None, "", ""))
            continue
        # Column by column, the rows zipped in C: this runs for every prediction served.
        predictions = log.predictions
        ids = list(map(_ID, predictions))
        if not native_uuid:
            ids = [i.replace("-", "") for i in ids]
        texts, notes = _instances_json(log.instances, len(ids))
        rows += zip(repeat(log.project_id), repeat(log.model_version_id), repeat(log.token_id),
                    ids, repeat(outcome), repeat(log.status_code), repeat(log.latency_ms),
                    map(_LABEL, predictions), map(_CONFIDENCE, predictions), repeat(created),
                    texts, repeat(""), notes)
    return rows


_ID, _LABEL, _CONFIDENCE = attrgetter("id"), attrgetter("label"), attrgetter("confidence")


def _instances_json(instances: Sequence[object] | None, n: int):
    """The kept instances' JSON texts and notes (see ``_instance_json``), ``n`` of each."""
    if not instances:
        return repeat(None, n), repeat("", n)
    if all(type(i) is bytes and b"\\u0000" not in i for i in instances):  # the API's
        return [i.decode() for i in instances], repeat("", n)
    pairs = [(None, "") if i is None else _instance_json(i) for i in instances]
    return [text for text, _ in pairs], [note for _, note in pairs]


def _instance_json(instance: object) -> tuple[str | None, str]:
    """The instance as JSON text the database takes, and a note when it had to change.

    ``instance`` may come serialized already (bytes of JSON, as the predict API checked
    its size)."""
    if type(instance) is bytes:
        if b"\\u0000" not in instance:
            return instance.decode(), ""
        instance = orjson.loads(instance)
    try:
        data = orjson.dumps(instance)
    except TypeError:  # not JSON (a lone surrogate, an integer past 64 bits)
        try:
            data = orjson.dumps(json_sanitize(instance), default=str)
        except TypeError:
            return None, "instance dropped: not JSON"
        return data.decode(), "instance sanitized: not valid JSON text"
    if b"\\u0000" in data:  # PostgreSQL's jsonb takes no NUL
        clean = json_sanitize(instance)
        if clean != instance:
            return orjson.dumps(clean).decode(), "instance sanitized: NUL replaced with U+FFFD"
    return data.decode(), ""


def _references_kept(rows: Sequence[tuple]) -> tuple[list[tuple], Known]:
    """Rows whose project still exists; a deleted token or model version is left out of its
    row (as their deletion would have done), so no insert fails on a foreign key. Also
    returns the live projects' slugs and versions' numbers, which the rollups need."""
    def live(model, index: int, field: str) -> dict:
        wanted = {row[index] for row in rows if row[index] is not None}
        return (dict(model.objects.filter(pk__in=wanted).values_list("pk", field))
                if wanted else {})

    projects, versions = live(Project, _PROJECT, "slug"), live(ModelVersion, _VERSION, "number")
    tokens = live(ApiToken, _TOKEN, "pk")
    kept, gone = [], 0
    for row in rows:
        if row[_PROJECT] not in projects:
            gone += 1
            continue
        missing = [name for name, index, present in (("model version", _VERSION, versions),
                                                      ("token", _TOKEN, tokens))
                   if row[index] is not None and row[index] not in present]
        if missing:
            row = list(row)
            for name in missing:
                row[_VERSION if name == "model version" else _TOKEN] = None
            row[_NOTE] = _noted(row[_NOTE], f"{' and '.join(missing)} deleted before the row was written")
            row = tuple(row)
        kept.append(row)
    if gone:
        logger.warning("%d prediction log row(s) of deleted projects not written", gone)
    return kept, (projects, versions)


def _noted(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


def _repairs(row: tuple, exc: Exception) -> Iterator[tuple]:
    """Ever plainer versions of a row the database refused: its text sanitized, then
    without its instance."""
    why = f"stored after {type(exc).__name__}: {str(exc).strip()[:200]}"
    fixed = list(row)
    fixed[_PREDICTED] = text_sanitize(str(row[_PREDICTED]))[:200]
    fixed[_TRUE] = text_sanitize(str(row[_TRUE]))[:200]
    instance = row[_INSTANCE]
    if instance is not None:
        try:
            fixed[_INSTANCE] = orjson.dumps(json_sanitize(orjson.loads(instance))).decode()
        except (TypeError, ValueError):
            fixed[_INSTANCE] = None
    fixed[_NOTE] = _noted(row[_NOTE], f"{why}; text the database refuses replaced with U+FFFD")
    yield tuple(fixed)
    if instance is not None:
        fixed[_INSTANCE] = None
        fixed[_NOTE] = _noted(row[_NOTE], f"{why}; instance dropped")
        yield tuple(fixed)


def _stored(prediction_id) -> bool:
    if prediction_id is None:
        return False
    return PredictionLog.objects.filter(prediction_id=uuid.UUID(str(prediction_id))).exists()


def _row_write(cursor, sql: str, row: tuple, exc: Exception) -> int:
    """Store one row the database refused, repaired; 0 if it was stored before (a flush
    retried) or cannot be stored at all (logged with its values)."""
    if _stored(row[_PREDICTION_ID]):
        return 0
    for repaired in _repairs(row, exc):
        try:
            with transaction.atomic():
                cursor.execute(sql, repaired)
        except _ROW_ERRORS as again:
            exc = again
            continue
        logger.warning("prediction log row %s of project %s: %s", row[_PREDICTION_ID],
                       row[_PROJECT], repaired[_NOTE])
        return 1
    logger.error("prediction log row could not be stored (%s: %s): %r",
                 type(exc).__name__, exc, row)
    return 0


def _copy_sql() -> str:
    return (f"COPY {connection.ops.quote_name(PredictionLog._meta.db_table)} ({_columns()}) "
            "FROM STDIN")


def _copy_write(cursor, rows: Sequence[tuple]) -> bool:
    """PostgreSQL: the rows in one COPY under a savepoint; False if the database refused
    them (nothing of them is kept then). COPY costs the writing process a fraction of
    what a pipelined ``executemany`` does per row (about 60 µs there), and that process
    is the one serving requests."""
    try:
        with transaction.atomic(), connection.wrap_database_errors:
            with cursor.cursor.copy(_copy_sql()) as copy:
                for row in rows:
                    copy.write_row(row)
        return True
    except _ROW_ERRORS:
        return False


def _chunk_write(cursor, sql: str, rows: Sequence[tuple], *, copy: bool = True) -> int:
    """Insert ``rows`` under a savepoint (PostgreSQL: by COPY first); if the database
    refuses the batch, halve it until each bad row stands alone, so every good row is
    stored as it is."""
    if copy and len(rows) > 1 and connection.vendor == "postgresql" and _copy_write(cursor, rows):
        return len(rows)
    try:
        with transaction.atomic():
            cursor.executemany(sql, rows)
        return len(rows)
    except _ROW_ERRORS as exc:
        if len(rows) == 1:
            return _row_write(cursor, sql, rows[0], exc)
        middle = len(rows) // 2
        return (_chunk_write(cursor, sql, rows[:middle], copy=False)
                + _chunk_write(cursor, sql, rows[middle:], copy=False))


def _summary(log: RequestLog) -> tuple:
    return request_summary(project_id=log.project_id, slug=None,
                           model_version_id=log.model_version_id, status_code=log.status_code,
                           latency_ms=log.latency_ms, created_at=log.created_at,
                           rows=len(log.predictions) if log.status_code < 400 else 0)


def _rows_write(rows: Sequence[tuple], requests: Sequence[tuple] = ()) -> int:
    """Insert ``rows`` and add them and ``requests`` to the rollups; return how many rows
    were stored."""
    if not rows and not requests:
        return 0
    sql = _insert_sql()
    for attempt in (1, 2):
        kept, known = _references_kept(rows) if rows else ([], None)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                written = sum(_chunk_write(cursor, sql, kept[start : start + BATCH_ROWS])
                              for start in range(0, len(kept), BATCH_ROWS))
                if settings.PREDICTION_ROLLUPS:
                    rollups_add(kept, requests, known=known)
                return written
        except IntegrityError:  # at commit: a deferred foreign key, deleted meanwhile
            if attempt == 2:
                raise
    return 0


def prediction_log_write(logs: Sequence[RequestLog]) -> int:
    """Insert the rows of ``logs`` now; return how many rows were written."""
    return _rows_write(_rows(logs), [_summary(log) for log in logs]) if logs else 0


class _Buffer:
    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._requests: list[tuple] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, rows: list[tuple], request: tuple | None) -> None:
        with self._lock:
            self._rows += rows
            if request is not None:
                self._requests.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prediction-log",
                                                daemon=True)
                self._thread.start()

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
            requests, self._requests = self._requests, []
        try:
            return _rows_write(rows, requests)
        except Exception:
            self._put_back(rows, requests)  # nothing of them was committed
            raise

    def _put_back(self, rows: list[tuple], requests: list[tuple]) -> None:
        with self._lock:
            self._rows = rows + self._rows
            self._requests = requests + self._requests
            excess = len(self._rows) - MAX_BUFFERED_ROWS
            if excess > 0:
                del self._rows[:excess]
                logger.error("prediction log buffer full: the %d oldest row(s) dropped", excess)
            excess = len(self._requests) - MAX_BUFFERED_ROWS
            if excess > 0:
                del self._requests[:excess]
                logger.error("prediction log buffer full: the %d oldest request(s) not counted",
                             excess)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(settings.PREDICTION_LOG_FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # a failed flush must not kill the writer thread
                logger.exception("writing prediction logs failed")
            finally:
                close_old_connections()


def _flush_at_exit() -> None:
    if _buffer._rows or _buffer._requests:
        _buffer.flush()


def _forked(buffer: _Buffer) -> None:
    """In a forked child, the rows inherited are the parent's to write, and its writer
    thread does not exist there: start empty."""
    buffer.__init__()


_buffer = _Buffer()
# What is buffered is written when the process ends normally. A plain interpreter exit runs
# atexit; a multiprocessing child (granian's workers, stopped by SIGTERM on shutdown or
# reload) leaves through os._exit and runs only multiprocessing's finalizers, which it
# clears when it starts: so the flush is registered with both, and again in each such
# child. A second call finds the buffer empty.
atexit.register(_flush_at_exit)
multiprocessing.util.Finalize(None, _flush_at_exit, exitpriority=10)
os.register_at_fork(after_in_child=lambda: _forked(_buffer))
multiprocessing.util.register_after_fork(
    _buffer, lambda _: multiprocessing.util.Finalize(None, _flush_at_exit, exitpriority=10))


def prediction_log_record(log: RequestLog) -> None:
    """Queue a request's log for a bulk insert within ``PREDICTION_LOG_FLUSH_SECONDS``.

    With ``PREDICTION_LOG_BUFFERED`` off (tests), write it at once.
    """
    if settings.PREDICTION_LOG_BUFFERED:
        _buffer.add(_rows([log]), _summary(log) if settings.PREDICTION_ROLLUPS else None)
    else:
        prediction_log_write([log])


def prediction_refused_record(*, slug: str, status_code: int, latency_ms: float) -> None:
    """Count a predict request refused before its project was known (no or a bad token,
    another project's token) under the URL's project, if there is one; nothing of the
    request is stored."""
    if not settings.PREDICTION_ROLLUPS:
        return
    summary = request_summary(project_id=None, slug=slug, model_version_id=None,
                              status_code=status_code, latency_ms=latency_ms,
                              created_at=timezone.now())
    if settings.PREDICTION_LOG_BUFFERED:
        _buffer.add([], summary)
    else:
        _rows_write([], [summary])


def prediction_log_flush() -> int:
    """Write whatever this process has buffered now; return how many rows were written."""
    return _buffer.flush()
