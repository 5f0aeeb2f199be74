"""Rebuild the monitoring rollups from the raw prediction logs, in SQL, batch by batch.

For backfills and repairs: prediction logs written before the rollups existed (an upgrade),
written with ``PREDICTION_ROLLUPS`` off, or rollups that are wrong for any other reason.
Each batch is a range of whole minutes of one project, rebuilt in one transaction:

1. the four rollup tables are locked against writes (PostgreSQL ``SHARE ROW EXCLUSIVE``;
   reads go on). A flush of the prediction-log writer waits for the batch; one that began
   before it committed first and is read with the raw rows, one that waits adds its rows
   after the batch, on top of counts that do not have them yet. So nothing is counted
   twice or lost while the server keeps serving;
2. the raw rows of the range are aggregated in the database exactly as the writer sums a
   flush (``serving/rollups.py``): the rows of one request share their ``created_at``,
   latency, status, token and model version, so grouping on those gives the requests; the
   latency bucket and the tenth of confidence are computed as the writer computes them;
3. the minute rollups of the range are replaced, and the hour rollups of the hours it
   touches are summed again from the minute rollups.

Requests refused before their project was known (no or a bad token) leave no raw row,
only counts under version 0. A rebuild keeps whatever version 0 counted beyond what the
raw rows give (per column, never below zero), so rebuilding again changes nothing
(idempotent) and those refusals are not lost. Minutes before the raw logs' retention
horizon (``PREDICTION_LOG_RETENTION_DAYS``), whose raw rows may be pruned already, and
minutes outside the project's first and last raw row are never touched.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Project
from learning.models import ModelVersion
from serving.models import (
    CONFIDENCE_COLUMNS,
    ERROR_COLUMNS,
    LATENCY_BOUNDS_MS,
    LATENCY_COLUMNS,
    PredictionClassHourRollup,
    PredictionClassRollup,
    PredictionHourRollup,
    PredictionLog,
    PredictionRollup,
)
from serving.rollups import COUNT_COLUMNS, minute_of

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
# Counts a request refused without a raw row can carry: kept through a rebuild.
_UNLOGGED = ("requests", *ERROR_COLUMNS, *LATENCY_COLUMNS)


@dataclass
class RebuildReport:
    projects: int = 0
    batches: int = 0
    predictions: int = 0
    minutes: int = 0


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model) -> str:
    return _q(model._meta.db_table)


def _trunc(unit: str, column: str) -> str:
    """SQL truncating a datetime column to the UTC minute or hour, as the writer stores it."""
    if connection.vendor == "postgresql":
        return f"date_trunc('{unit}', {column})"  # Django's connections run in UTC
    return f"strftime('%%Y-%%m-%%d %%H:{'%%M' if unit == 'minute' else '00'}:00', {column})"


def _ceil(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    floor = _floor(value, step)
    return floor if floor == value else floor + step


def _floor(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    value = value.astimezone(dt.UTC)
    if step == HOUR:
        return value.replace(minute=0, second=0, microsecond=0)
    return value.replace(second=0, microsecond=0)


def _bucket_sql() -> str:
    """The writer's ``latency_bucket``: the first upper bound not below the latency."""
    whens = " ".join(f"WHEN l.latency_ms <= {bound!r} THEN {i}"
                     for i, bound in enumerate(LATENCY_BOUNDS_MS))
    return f"CASE {whens} ELSE {len(LATENCY_BOUNDS_MS)} END"


def _bin_sql() -> str:
    """The writer's ``confidence_bin``, min(max(int(c * 10), 0), 9) (NULL without one):
    int() truncates, which is the floor of the non-negative values clamped here."""
    if connection.vendor == "postgresql":
        return "LEAST(GREATEST(FLOOR(l.confidence * 10), 0), 9)"
    return "MIN(MAX(CAST(l.confidence * 10 AS INTEGER), 0), 9)"


def _requests_sql() -> str:
    """Per (project, version number, minute): the writer's counts, from one range of raw
    rows of one project (parameters: project id, start, end)."""
    ok = "l.status_code < 400"
    per_request = ", ".join(
        [f"SUM(CASE WHEN {ok} THEN 1 ELSE 0 END) AS n_rows",
         f"SUM(CASE WHEN {ok} THEN COALESCE(l.confidence, 0) ELSE 0 END) AS conf_sum",
         *(f"SUM(CASE WHEN {ok} AND {_bin_sql()} = {i} THEN 1 ELSE 0 END) AS c{i}"
           for i in range(len(CONFIDENCE_COLUMNS)))])
    errors = {"errors_401": "r.status_code = 401", "errors_403": "r.status_code = 403",
              "errors_429": "r.status_code = 429",
              "errors_4xx": "r.status_code >= 400 AND r.status_code < 500"
                            " AND r.status_code NOT IN (401, 403, 429)",
              "errors_5xx": "r.status_code >= 500"}
    outer = ", ".join(
        ["COUNT(*)", "SUM(r.n_rows)",
         *(f"SUM(CASE WHEN {errors[c]} THEN 1 ELSE 0 END)" for c in ERROR_COLUMNS),
         *(f"SUM(CASE WHEN r.bucket = {i} THEN 1 ELSE 0 END)" for i in range(len(LATENCY_COLUMNS))),
         *(f"SUM(r.c{i})" for i in range(len(CONFIDENCE_COLUMNS))),
         "SUM(r.conf_sum)"])
    log, version = _table(PredictionLog), _table(ModelVersion)
    return (
        f"SELECT r.version, r.minute, {outer} FROM ("
        f" SELECT CASE WHEN {ok} THEN COALESCE(v.number, 0) ELSE 0 END AS version,"
        f" {_trunc('minute', 'l.created_at')} AS minute, l.status_code AS status_code,"
        f" {_bucket_sql()} AS bucket, {per_request}"
        f" FROM {log} l LEFT JOIN {version} v ON v.id = l.model_version_id"
        f" WHERE l.project_id = %s AND l.created_at >= %s AND l.created_at < %s"
        f" GROUP BY l.model_version_id, v.number, l.token_id, l.created_at, l.latency_ms,"
        f" l.status_code) r GROUP BY r.version, r.minute")


def _classes_sql() -> str:
    log, version = _table(PredictionLog), _table(ModelVersion)
    return (f"SELECT COALESCE(v.number, 0), {_trunc('minute', 'l.created_at')}, l.predicted_label,"
            f" COUNT(*) FROM {log} l LEFT JOIN {version} v ON v.id = l.model_version_id"
            f" WHERE l.project_id = %s AND l.created_at >= %s AND l.created_at < %s"
            f" AND l.status_code < 400 GROUP BY 1, 2, 3")


def _columns(model, names) -> list[str]:
    return [model._meta.get_field(name).column for name in names]


def _batch_rebuild(cursor, project_id: int, start: dt.datetime, end: dt.datetime) -> tuple[int, int]:
    """Rebuild the minutes [start, end) of one project; return (predictions counted,
    rollup rows written)."""
    adapt = connection.ops.adapt_datetimefield_value
    bounds = [project_id, adapt(start), adapt(end)]
    if connection.vendor == "postgresql":
        tables = ", ".join(_table(m) for m in (PredictionRollup, PredictionHourRollup,
                                               PredictionClassRollup, PredictionClassHourRollup))
        cursor.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
    cursor.execute(_requests_sql(), bounds)
    counts = {(version, minute_of(minute)): [*map(int, values[:-1]), float(values[-1] or 0.0)]
              for version, minute, *values in cursor.fetchall()}  # PostgreSQL sums are numeric
    predictions = sum(values[1] for values in counts.values())
    cursor.execute(_classes_sql(), bounds)
    classes = [(version, minute_of(minute), label, n) for version, minute, label, n in cursor.fetchall()]

    index = {name: i for i, name in enumerate(COUNT_COLUMNS)}
    unlogged = _columns(PredictionRollup, _UNLOGGED)
    cursor.execute(f"SELECT {_q('minute')}, {', '.join(map(_q, unlogged))} "
                   f"FROM {_table(PredictionRollup)} WHERE project_id = %s AND version = 0 "
                   f"AND {_q('minute')} >= %s AND {_q('minute')} < %s", bounds)
    for minute, *existing in cursor.fetchall():
        values = counts.setdefault((0, minute_of(minute)), [0] * (len(COUNT_COLUMNS) - 1) + [0.0])
        for name, n in zip(_UNLOGGED, existing):
            values[index[name]] += max(n - values[index[name]], 0)

    for model in (PredictionRollup, PredictionClassRollup):
        cursor.execute(f"DELETE FROM {_table(model)} WHERE project_id = %s "
                       f"AND {_q('minute')} >= %s AND {_q('minute')} < %s", bounds)
    columns = ", ".join(map(_q, ["project_id", "version", "minute",
                                 *_columns(PredictionRollup, COUNT_COLUMNS)]))
    marks = ", ".join(["%s"] * (3 + len(COUNT_COLUMNS)))
    cursor.executemany(f"INSERT INTO {_table(PredictionRollup)} ({columns}) VALUES ({marks})",
                       [(project_id, v, adapt(m), *values)
                        for (v, m), values in sorted(counts.items()) if any(values)])
    cursor.executemany(
        f"INSERT INTO {_table(PredictionClassRollup)} (project_id, version, {_q('minute')},"
        f" label, {_q('count')}) VALUES (%s, %s, %s, %s, %s)",
        [(project_id, v, adapt(m), label, n) for v, m, label, n in sorted(classes)])
    _hours_rebuild(cursor, project_id, _floor(start, HOUR), _ceil(end, HOUR))
    return predictions, len(counts)


def _hours_rebuild(cursor, project_id: int, start: dt.datetime, end: dt.datetime) -> None:
    """Sum the hour rollups of [start, end) (whole hours) again from the minute rollups."""
    adapt = connection.ops.adapt_datetimefield_value
    bounds = [project_id, adapt(start), adapt(end)]
    for hours, minutes, counted in (
            (PredictionHourRollup, PredictionRollup, _columns(PredictionRollup, COUNT_COLUMNS)),
            (PredictionClassHourRollup, PredictionClassRollup, ["label", "count"])):
        cursor.execute(f"DELETE FROM {_table(hours)} WHERE project_id = %s "
                       f"AND {_q('hour')} >= %s AND {_q('hour')} < %s", bounds)
        keys = ["label"] if "label" in counted else []
        sums = [c for c in counted if c not in keys]
        selected = ", ".join([f"{_q(k)}" for k in keys] + [f"SUM({_q(c)})" for c in sums])
        grouped = ", ".join(["project_id", "version", _trunc("hour", _q("minute")), *map(_q, keys)])
        cursor.execute(
            f"INSERT INTO {_table(hours)} (project_id, version, {_q('hour')}, "
            f"{', '.join(map(_q, counted))}) "
            f"SELECT project_id, version, {_trunc('hour', _q('minute'))}, {selected} "
            f"FROM {_table(minutes)} WHERE project_id = %s AND {_q('minute')} >= %s "
            f"AND {_q('minute')} < %s GROUP BY {grouped}", bounds)


def _raw_range(project_id: int, start: dt.datetime | None) -> tuple[dt.datetime, dt.datetime] | None:
    """The whole minutes from the project's first raw row at or after ``start`` through its
    last one; None without any."""
    logs = PredictionLog.objects.filter(project_id=project_id)
    if start is not None:
        logs = logs.filter(created_at__gte=start)
    first = logs.order_by("created_at").values_list("created_at", flat=True).first()
    if first is None:
        return None
    last = logs.order_by("-created_at").values_list("created_at", flat=True).first()
    return _floor(first, MINUTE), _floor(last, MINUTE) + MINUTE


def rollups_rebuild(*, project: Project | None = None, since: dt.datetime | None = None,
                    batch: dt.timedelta = dt.timedelta(hours=6), now: dt.datetime | None = None,
                    progress: Callable[[str, dt.datetime, dt.datetime], None] | None = None,
                    ) -> RebuildReport:
    """Rebuild the rollups of ``project`` (default: every project) from its raw logs, from
    ``since`` (default: the first raw row) on, in transactions of ``batch`` at most."""
    now = now or timezone.now()
    start = _floor(since, MINUTE) if since is not None else None
    days = settings.PREDICTION_LOG_RETENTION_DAYS
    if days > 0:  # older raw rows may be pruned, or half pruned: leave their minutes alone
        horizon = _ceil(now - dt.timedelta(days=days), MINUTE)
        start = horizon if start is None else max(start, horizon)
    projects = [project] if project is not None else list(Project.objects.order_by("pk"))
    report = RebuildReport()
    for each in projects:
        found = _raw_range(each.pk, start)
        if found is None:
            continue
        report.projects += 1
        low, high = found
        while low < high:
            upper = min(_floor(low, HOUR) + max(batch, MINUTE), high)
            upper = max(_floor(upper, MINUTE), low + MINUTE)
            with transaction.atomic(), connection.cursor() as cursor:
                rows, minutes = _batch_rebuild(cursor, each.pk, low, upper)
            report.batches += 1
            report.predictions += rows
            report.minutes += minutes
            if progress is not None:
                progress(each.slug, low, upper)
            low = upper
    return report
