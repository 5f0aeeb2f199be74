"""Prometheus metrics, in prometheus-client's multiprocess mode.

Predict counters and the latency histogram are counted by the prediction-log writer thread
of each web process as it flushes (``serving.rollups.rollups_add``), off the request path,
into files under ``PROMETHEUS_MULTIPROC_DIR``; a scrape merges every process's files.
Labels, retrains and the served version are read from the database at scrape time (a few
aggregate queries over small tables), so no other app has to count anything.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from django.db.models import Count
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from annotation.models import LabelCounts, Project
from learning.models import ModelVersion
from serving.models import LATENCY_BOUNDS_MS, RuleFiring

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREDICT_REQUESTS = Counter("predict_requests", "Predict requests by project and status class.",
                           ["project", "status"])
PREDICT_ROWS = Counter("predict_rows", "Predictions served, by project.", ["project"])
PREDICT_LATENCY = Histogram("predict_latency_seconds", "Predict request latency.", ["project"],
                            buckets=[b / 1000 for b in LATENCY_BOUNDS_MS])


def status_class(status_code: int) -> str:
    if status_code in (401, 403, 429):
        return str(status_code)
    return f"{status_code // 100}xx"


def predictions_count_many(*, statuses: dict[tuple[str, int], int], rows: dict[str, int],
                           latencies_ms: dict[str, list[float]]) -> None:
    """Count a flush's requests (called by the log writer thread): ``statuses`` requests per
    (slug, status code), ``rows`` per slug, every request's latency per slug."""
    classes: dict[tuple[str, str], int] = {}
    for (slug, status_code), n in statuses.items():
        key = (slug, status_class(status_code))
        classes[key] = classes.get(key, 0) + n
    for (slug, status), n in classes.items():
        PREDICT_REQUESTS.labels(slug, status).inc(n)
    for slug, n in rows.items():
        if n:
            PREDICT_ROWS.labels(slug).inc(n)
    for slug, values in latencies_ms.items():
        _observe_many(PREDICT_LATENCY.labels(slug), [ms / 1000 for ms in values])


def _observe_many(histogram: Histogram, amounts: list[float]) -> None:
    """``histogram.observe`` of each amount, as one increment per bucket and one of the sum.

    In multiprocess mode every increment takes a lock and writes a shared file: per request
    that was two of them; per flush it is a handful. The bucket of an amount is the first
    upper bound not below it, as ``observe`` finds it.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another prometheus-client
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = {}
    for amount in amounts:
        i = bisect.bisect_left(bounds, amount)
        counts[i] = counts.get(i, 0) + 1
    total.inc(sum(amounts))
    for i, n in counts.items():
        buckets[i].inc(n)


class _DatabaseCollector:
    """Labels, retrains and served versions per project, read at scrape time."""

    def __init__(self, project_ids: set[int] | None) -> None:
        self.project_ids = project_ids

    def _scoped(self, queryset, field: str = "project_id"):
        return queryset if self.project_ids is None else queryset.filter(**{f"{field}__in": self.project_ids})

    def collect(self) -> Iterator[Metric]:
        slugs = dict(self._scoped(Project.objects.all(), "pk").values_list("pk", "slug"))
        labels = GaugeMetricFamily("annotation_labels_current",
                                   "Current labels per project (a gauge: undos lower it).",
                                   labels=["project"])
        for project_id, n in self._scoped(LabelCounts.objects.all()).values_list("project_id", "current_labels"):
            if project_id in slugs:
                labels.add_metric([slugs[project_id]], n)
        yield labels
        retrains = CounterMetricFamily("retrains", "Finished retrains per project and outcome.",
                                       labels=["project", "outcome"])
        finished = (self._scoped(ModelVersion.objects.filter(status__in=["ready", "failed"]))
                    .values("project_id", "status").annotate(n=Count("pk")).order_by())
        for row in finished:
            if row["project_id"] in slugs:
                retrains.add_metric([slugs[row["project_id"]], row["status"]], row["n"])
        yield retrains
        served = GaugeMetricFamily("served_model_version", "Number of the served model version.",
                                   labels=["project"])
        for project_id, number in self._scoped(ModelVersion.objects.filter(is_served=True)).values_list(
                "project_id", "number"):
            if project_id in slugs:
                served.add_metric([slugs[project_id]], number)
        yield served
        alerts = GaugeMetricFamily("rule_alerts_open",
                                   "Open alerts of KPI rules per project (0: none).",
                                   labels=["project"])
        open_alerts = dict(self._scoped(RuleFiring.objects.filter(
            alerted=True, alert_resolved_at__isnull=True))
            .values_list("project_id").annotate(n=Count("pk")).order_by())
        for project_id, slug in slugs.items():
            alerts.add_metric([slug], open_alerts.get(project_id, 0))
        yield alerts


class _OnlyProject:
    """The multiprocess metrics, restricted to one project's series."""

    def __init__(self, collector, slug: str) -> None:
        self.collector, self.slug = collector, slug

    def collect(self) -> Iterable[Metric]:
        for metric in self.collector.collect():
            metric.samples = [s for s in metric.samples if s.labels.get("project") == self.slug]
            yield metric


def metrics_text(*, project: Project | None = None) -> bytes:
    """The exposition text of every process's metrics and the database's; only
    ``project``'s series when given."""
    processes = multiprocess.MultiProcessCollector(None)  # registered below, not globally
    registry = CollectorRegistry()
    registry.register(processes if project is None else _OnlyProject(processes, project.slug))
    registry.register(_DatabaseCollector(None if project is None else {project.pk}))
    return generate_latest(registry)
