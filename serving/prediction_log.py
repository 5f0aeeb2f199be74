"""Record prediction logs in bulk, off the request's critical path."""
from __future__ import annotations

import atexit
import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from serving.models import PredictionLog

logger = logging.getLogger(__name__)


class _Buffer:
    def __init__(self) -> None:
        self._rows: list[PredictionLog] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, rows: list[PredictionLog]) -> None:
        with self._lock:
            self._rows.extend(rows)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            PredictionLog.objects.bulk_create(rows, batch_size=1000)
        return len(rows)

    def _run(self) -> None:
        while True:
            self._wake.wait(settings.PREDICTION_LOG_FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a failed flush must not kill the writer thread
                logger.exception("writing prediction logs failed")
            finally:
                close_old_connections()


_buffer = _Buffer()
atexit.register(lambda: _buffer.flush())


def prediction_log_record(rows: list[PredictionLog]) -> None:
    """Queue rows for a bulk insert within ``PREDICTION_LOG_FLUSH_SECONDS``.

    With ``PREDICTION_LOG_BUFFERED`` off (tests), write them at once.
    """
    if not rows:
        return
    if settings.PREDICTION_LOG_BUFFERED:
        _buffer.add(rows)
    else:
        PredictionLog.objects.bulk_create(rows)


def prediction_log_flush() -> int:
    """Write whatever is buffered now; return how many rows were written."""
    return _buffer.flush()
