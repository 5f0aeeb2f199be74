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
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
from django.conf import settings
from django.db import close_old_connections, connection, transaction

from serving.models import PredictionLog

logger = logging.getLogger(__name__)

BATCH_ROWS = 1000


class LoggedPrediction(Protocol):
    id: str  # canonical UUID text
    label: str
    confidence: float


@dataclass(slots=True)
class RequestLog:
    """One API request's log: a row per prediction, or one row for a failed request.

    ``instances`` runs parallel to ``predictions``: the raw instance to keep on each row for
    later feedback, or None where it is too large (or not wanted).
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
            "instance", "true_label")


def _insert_sql() -> str:
    quote = connection.ops.quote_name
    columns = [PredictionLog._meta.get_field(name.removesuffix("_id")).column
               if name.endswith("_id") and name != "prediction_id"
               else PredictionLog._meta.get_field(name).column for name in _COLUMNS]
    return (f"INSERT INTO {quote(PredictionLog._meta.db_table)} "
            f"({', '.join(map(quote, columns))}) VALUES ({', '.join(['%s'] * len(columns))})")


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
                         log.latency_ms, "", None, created, None, ""))
            continue
        instances = log.instances or (None,) * len(log.predictions)
        for p, instance in zip(log.predictions, instances):
            if instance is not None:  # orjson: json.dumps costs ~10 µs per kept instance
                instance = orjson.dumps(instance).decode()
            rows.append((log.project_id, log.model_version_id, log.token_id,
                         p.id if native_uuid else p.id.replace("-", ""), outcome, log.status_code,
                         log.latency_ms, p.label, p.confidence, created, instance, ""))
    return rows


def _rows_write(rows: Sequence[tuple]) -> int:
    if not rows:
        return 0
    sql = _insert_sql()
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH_ROWS):
            cursor.executemany(sql, rows[start : start + BATCH_ROWS])
    return len(rows)


def prediction_log_write(logs: Sequence[RequestLog]) -> int:
    """Insert the rows of ``logs`` now; return how many rows were written."""
    return _rows_write(_rows(logs)) if logs else 0


class _Buffer:
    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, rows: list[tuple]) -> None:
        with self._lock:
            self._rows += rows
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prediction-log",
                                                daemon=True)
                self._thread.start()

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        return _rows_write(rows)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(settings.PREDICTION_LOG_FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # a failed flush must not kill the writer thread
                logger.exception("writing prediction logs failed")
            finally:
                close_old_connections()


_buffer = _Buffer()
atexit.register(lambda: _buffer.flush())


def prediction_log_record(log: RequestLog) -> None:
    """Queue a request's log for a bulk insert within ``PREDICTION_LOG_FLUSH_SECONDS``.

    With ``PREDICTION_LOG_BUFFERED`` off (tests), write it at once.
    """
    if settings.PREDICTION_LOG_BUFFERED:
        _buffer.add(_rows([log]))
    else:
        prediction_log_write([log])


def prediction_log_flush() -> int:
    """Write whatever this process has buffered now; return how many rows were written."""
    return _buffer.flush()
