"""Retention of raw prediction logs: rows older than ``PREDICTION_LOG_RETENTION_DAYS`` go,
in batches of ids, so no statement holds a long lock; the per-minute rollups stay."""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from serving.models import PredictionLog

PRUNE_BATCH_ROWS = 10_000


def prediction_logs_prune(*, days: int | None = None, batch_rows: int = PRUNE_BATCH_ROWS,
                          now: dt.datetime | None = None) -> int:
    """Delete prediction-log rows created before ``days`` (default the setting) ago; return
    how many went. Each batch is its own short transaction."""
    days = settings.PREDICTION_LOG_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0  # 0 keeps raw logs for ever
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    deleted = 0
    while True:
        ids = list(PredictionLog.objects.filter(created_at__lt=cutoff)
                   .order_by().values_list("pk", flat=True)[:batch_rows])
        if not ids:
            return deleted
        with transaction.atomic():
            count, _ = PredictionLog.objects.filter(pk__in=ids).delete()  # no cascades: one DELETE
        deleted += count
