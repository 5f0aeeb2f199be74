"""Per-minute rollups of predict requests, aggregated by the prediction-log writer.

The writer thread (``serving/prediction_log.py``) hands each flush's rows and request
summaries here; they are summed per (project, model version number, minute) and added to
``PredictionRollup`` / ``PredictionClassRollup`` with ``INSERT … ON CONFLICT DO UPDATE``
(PostgreSQL and SQLite alike), in the flush's transaction, and the same sums per hour to
``PredictionHourRollup`` / ``PredictionClassHourRollup`` (what long windows read). Tables are
written in one order and keys in sorted order, so two processes flushing at once cannot
deadlock on each other's rows.

A request summary is one small tuple per request, made on the request thread:
``(project_id, slug, model_version_id, status_code, latency_ms, created_at, rows)``. Requests the
API refused before knowing the caller's project (no or a bad token, another project's
token, key guessing) carry only the URL's ``slug``, resolved here in one query per flush;
they are counted without any row of their own. The same flush counts the requests in the
Prometheus metrics (``serving/metrics.py``).
"""
from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import connection, transaction

from core.text import text_sanitize
from annotation.models import Project
from learning.models import ModelVersion
from serving.metrics import predictions_count_many
from serving.models import (
    CONFIDENCE_COLUMNS,
    ERROR_COLUMNS,
    LATENCY_BOUNDS_MS,
    LATENCY_COLUMNS,
    PredictionClassHourRollup,
    PredictionClassRollup,
    PredictionHourRollup,
    PredictionRollup,
)

# Positions in a prediction-log row (serving.prediction_log._COLUMNS).
_PROJECT, _VERSION, _STATUS, _PREDICTED, _CONFIDENCE, _CREATED = 0, 1, 5, 7, 8, 9

_COUNTS = ("requests", "rows", *ERROR_COLUMNS, *LATENCY_COLUMNS, *CONFIDENCE_COLUMNS)
_INDEX = {name: i for i, name in enumerate(_COUNTS)}
_REQUESTS, _ROWS, _FIRST_LATENCY, _FIRST_CONFIDENCE = (
    _INDEX["requests"], _INDEX["rows"], _INDEX[LATENCY_COLUMNS[0]], _INDEX[CONFIDENCE_COLUMNS[0]])


def request_summary(*, project_id: int | None, slug: str | None, model_version_id: int | None,
                    status_code: int, latency_ms: float, created_at: dt.datetime,
                    rows: int = 0) -> tuple:
    return (project_id, slug, model_version_id, status_code, latency_ms, created_at, rows)


def error_column(status_code: int) -> str | None:
    """The ``errors_*`` column counting a request with this status; None below 400."""
    if status_code < 400:
        return None
    if status_code in (401, 403, 429):
        return f"errors_{status_code}"
    return "errors_4xx" if status_code < 500 else "errors_5xx"


def latency_bucket(latency_ms: float) -> int:
    """The index of the bucket holding ``latency_ms``: the first upper bound not below it."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


def confidence_bin(confidence: float) -> int:
    return min(max(int(confidence * 10), 0), 9)


def hour_of(minute: dt.datetime) -> dt.datetime:
    return minute.replace(minute=0)


def minute_of(value) -> dt.datetime:
    """The UTC minute of a datetime, or of the text SQLite's adapter made of one (UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value[:16])
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).replace(second=0, microsecond=0)


class _Sums:
    def __init__(self) -> None:
        self.counts: dict[tuple, list] = {}
        self.confidence_sum: dict[tuple, float] = defaultdict(float)
        self.classes: dict[tuple, int] = defaultdict(int)

    def counts_of(self, key: tuple) -> list:
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * len(_COUNTS)
        return counts


class _Minutes:
    """``minute_of`` for values that come in time order: a value within the minute of the
    previous one (the common case, a comparison) reuses it."""

    __slots__ = ("start", "end", "text")

    def __init__(self) -> None:
        self.start = self.end = self.text = None

    def __call__(self, value) -> dt.datetime:
        if isinstance(value, str):  # SQLite's adapted text: the minute is its first 16 chars
            if self.text is not None and value.startswith(self.text):
                return self.start
            self.start, self.text = minute_of(value), value[:16]
            self.end = None
            return self.start
        try:
            if self.end is not None and self.start <= value < self.end:
                return self.start
        except TypeError:  # a naive datetime (read as UTC)
            return minute_of(value)
        self.start = minute_of(value)
        self.end, self.text = self.start + _MINUTE, None
        return self.start


_MINUTE = dt.timedelta(minutes=1)
Known = tuple[dict[int, str], dict[int, int]]


def _aggregate(rows: Iterable[tuple], requests: Iterable[tuple]) -> _Sums:
    """Sum rows and requests per (project id, model version id, minute)."""
    sums = _Sums()
    minute_of_row, minute_of_request = _Minutes(), _Minutes()
    # This loop runs for every prediction served, so it does the least it can: the rows of
    # a request lie together and share project, version and created_at (and requests come
    # in time order), so the key and its counts are looked up only when one of them
    # changes; a row adds its confidence and label (a failed request's row is counted from
    # its request summary).
    last = key = None  # (project, version, created) of the previous row, and its key
    counts: list = []
    labels: dict[str, int] = {}
    total = 0.0  # the confidences of a request's rows, added to its key's sum at its end
    per_key: dict[tuple, dict[str, int]] = {}
    first_bin = _FIRST_CONFIDENCE
    for row in rows:
        if row[_STATUS] >= 400:
            continue
        here = (row[_PROJECT], row[_VERSION], row[_CREATED])
        if here != last:
            if total:
                sums.confidence_sum[key] += total
            last, total = here, 0.0
            key = (here[0], here[1], minute_of_row(here[2]))
            counts = sums.counts_of(key)
            labels = per_key.get(key)
            if labels is None:
                labels = per_key[key] = {}
        counts[_ROWS] += 1
        label = row[_PREDICTED]
        labels[label] = labels.get(label, 0) + 1
        confidence = row[_CONFIDENCE]
        if confidence is not None:
            tenth = int(confidence * 10)  # confidence_bin, inline
            counts[first_bin + (9 if tenth > 9 else 0 if tenth < 0 else tenth)] += 1
            total += confidence
    if total:
        sums.confidence_sum[key] += total
    for key, labels in per_key.items():
        for label, count in labels.items():
            sums.classes[(*key, label)] += count
    for project_id, slug, version_id, status, latency, created, _rows in requests:
        key = (project_id if project_id is not None else slug,
               version_id if status < 400 else None, minute_of_request(created))
        counts = sums.counts_of(key)
        counts[_REQUESTS] += 1
        counts[_FIRST_LATENCY + bisect.bisect_left(LATENCY_BOUNDS_MS, latency)] += 1
        if status >= 400:
            counts[_INDEX[error_column(status)]] += 1
    return sums


def _resolver(sums: _Sums, known: Known | None = None):
    """Map (project id or slug, version id) to (live project id, version number) or None.

    ``known`` holds what the caller read of the live projects and versions in this flush
    (the log writer checks its rows' references anyway); only the rest is queried.
    """
    projects, versions = known if known is not None else ({}, {})
    keys = [key for key in sums.counts] + [key for key in sums.classes]
    slugs = {key[0] for key in keys if isinstance(key[0], str)}
    ids = {key[0] for key in keys if isinstance(key[0], int) and key[0] not in projects}
    by_slug = dict(Project.objects.filter(slug__in=slugs).values_list("slug", "pk")) if slugs else {}
    live = {pk: slug for pk, slug in projects.items()}
    if ids:
        live.update(Project.objects.filter(pk__in=ids).values_list("pk", "slug"))
    live.update((pk, slug) for slug, pk in by_slug.items())
    version_ids = {key[1] for key in keys if key[1] is not None and key[1] not in versions}
    numbers = dict(versions)
    if version_ids:
        numbers.update(ModelVersion.objects.filter(pk__in=version_ids).values_list("pk", "number"))

    def resolve(project, version_id) -> tuple[int, int] | None:
        project_id = by_slug.get(project) if isinstance(project, str) else project
        if project_id not in live:
            return None
        return project_id, numbers.get(version_id, 0)

    return resolve, live


def _upsert_sql(model, key: Sequence[str], added: Sequence[str]) -> str:
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [model._meta.get_field(name).column for name in (*key, *added)]
    updates = ", ".join(f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}"
                        for c in columns[len(key):])
    return (f"INSERT INTO {table} ({', '.join(map(quote, columns))}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT ({', '.join(map(quote, columns[:len(key)]))}) DO UPDATE SET {updates}")


def rollups_add(rows: Sequence[tuple], requests: Sequence[tuple], *,
                known: Known | None = None) -> None:
    """Add a flush's rows and request summaries to the rollups (in the caller's transaction).

    ``known``: (project id -> slug, model version id -> number) of live projects and
    versions, as read in this flush; whatever it lacks is queried.
    """
    if not rows and not requests:
        return
    sums = _aggregate(rows, requests)
    resolve, slugs = _resolver(sums, known)
    merged: dict[tuple, list] = {}
    for (project, version_id, minute), counts in sums.counts.items():
        target = resolve(project, version_id)
        if target is None:
            continue  # a deleted project, or a slug no project has
        key = (*target, minute)
        total = merged.get(key)
        if total is None:
            merged[key] = [*counts, sums.confidence_sum.get((project, version_id, minute), 0.0)]
        else:
            for i, n in enumerate(counts):
                total[i] += n
            total[-1] += sums.confidence_sum.get((project, version_id, minute), 0.0)
    classes: dict[tuple, int] = defaultdict(int)
    for (project, version_id, minute, label), n in sums.classes.items():
        target = resolve(project, version_id)
        if target is not None:
            classes[(*target, minute, text_sanitize(str(label))[:200])] += n
    # Counted once the flush commits: a flush that fails is retried whole.
    transaction.on_commit(lambda: _metrics_count(requests, slugs))
    rollups_upsert(merged, classes)


COUNT_COLUMNS = (*_COUNTS, "confidence_sum")


def rollups_upsert(counts: dict[tuple, list], classes: dict[tuple, int]) -> None:
    """Add ``counts`` ((project id, version number, minute) -> the ``COUNT_COLUMNS``) and
    ``classes`` ((project id, version number, minute, label) -> count) to the minute rollups
    and, summed per hour, to the hour rollups."""
    hours: dict[tuple, list] = {}
    for (p, v, minute), values in counts.items():
        total = hours.get((p, v, hour_of(minute)))
        if total is None:
            hours[(p, v, hour_of(minute))] = list(values)
        else:
            for i, n in enumerate(values):
                total[i] += n
    class_hours: dict[tuple, int] = defaultdict(int)
    for (p, v, minute, label), n in classes.items():
        class_hours[(p, v, hour_of(minute), label)] += n
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        for model, time_field, sums in ((PredictionRollup, "minute", counts),
                                        (PredictionHourRollup, "hour", hours)):
            if sums:
                cursor.executemany(
                    _upsert_sql(model, ("project", "version", time_field), COUNT_COLUMNS),
                    [(p, v, adapt(t), *values) for (p, v, t), values in sorted(sums.items())])
        for model, time_field, sums in ((PredictionClassRollup, "minute", classes),
                                        (PredictionClassHourRollup, "hour", class_hours)):
            if sums:
                cursor.executemany(
                    _upsert_sql(model, ("project", "version", time_field, "label"), ("count",)),
                    [(p, v, adapt(t), label, n) for (p, v, t, label), n in sorted(sums.items())])


def _metrics_count(requests: Sequence[tuple], slugs: dict[int, str]) -> None:
    """Count the requests of live projects in the Prometheus metrics: the counters once per
    flush and series (each increment writes a shared file), the latencies one by one."""
    known = set(slugs.values())
    statuses: dict[tuple[str, int], int] = defaultdict(int)
    rows: dict[str, int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    for project_id, slug, _version, status, latency, _created, n in requests:
        slug = slugs.get(project_id) if project_id is not None else slug
        if slug in known:
            statuses[(slug, status)] += 1
            rows[slug] += n
            latencies[slug].append(latency)
    predictions_count_many(statuses=statuses, rows=rows, latencies_ms=latencies)
