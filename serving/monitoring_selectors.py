"""Monitoring reads: a project's predict traffic, errors, latency, confidence and classes
over a window, from the rollups (never a scan of raw logs; whole hours from the hour
rollups, ``serving/rollup_windows.py``), plus live accuracy from the few prediction-log rows
with feedback in the window (an indexed range).

Percentiles are estimated from the merged latency buckets: the bucket where the running
count crosses ``q × requests``, interpolated geometrically between its bounds (the buckets
are log-spaced, so the estimate is within a factor of 2, usually much closer). The share of
low-confidence predictions interpolates linearly inside the tenth holding the threshold
(exact at a tenth's edge, as the default 0.5 is).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, Q
from django.db.models.functions import TruncDay, TruncHour, TruncMinute
from django.utils import timezone

from annotation.models import Label, Project, Sample
from learning.models import ModelVersion
from serving.drift_selectors import input_drift
from serving.models import (
    CONFIDENCE_COLUMNS,
    ERROR_COLUMNS,
    LATENCY_BOUNDS_MS,
    LATENCY_COLUMNS,
    PredictionLog,
)
from serving.rollup_windows import RollupWindow


@dataclass(frozen=True)
class Window:
    name: str
    span: dt.timedelta
    step: dt.timedelta
    trunc: type


WINDOWS = {
    "1h": Window("1h", dt.timedelta(hours=1), dt.timedelta(minutes=1), TruncMinute),
    "24h": Window("24h", dt.timedelta(hours=24), dt.timedelta(hours=1), TruncHour),
    "7d": Window("7d", dt.timedelta(days=7), dt.timedelta(hours=1), TruncHour),
    "30d": Window("30d", dt.timedelta(days=30), dt.timedelta(days=1), TruncDay),
}
ERROR_STATUS = {"errors_401": "401", "errors_403": "403", "errors_429": "429",
                "errors_4xx": "4xx", "errors_5xx": "5xx"}
ESTIMATE_NOTE = ("an estimate, not a measurement: the mean top-class confidence over the "
                 "window, which equals the expected accuracy only if the model is calibrated")
Z95 = 1.959963984540054
TRAINING_COUNTS_SECONDS = 600


def latency_percentile(buckets: list[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (0..1) of latencies counted in ``buckets``."""
    total = sum(buckets)
    if not total:
        return None
    target = q * total
    running = 0
    for i, n in enumerate(buckets):
        if n and running + n >= target:
            if i >= len(LATENCY_BOUNDS_MS):  # above the last bound: at least that
                return LATENCY_BOUNDS_MS[-1]
            high = LATENCY_BOUNDS_MS[i]
            fraction = (target - running) / n
            if i == 0:
                return high * fraction
            low = LATENCY_BOUNDS_MS[i - 1]
            return low * (high / low) ** fraction
        running += n
    return LATENCY_BOUNDS_MS[-1]


def share_below(histogram: list[int], threshold: float) -> float | None:
    """The share of predictions with confidence below ``threshold`` from tenths."""
    total = sum(histogram)
    if not total:
        return None
    below = 0.0
    for i, n in enumerate(histogram):
        low, high = i / 10, (i + 1) / 10
        if threshold >= high:
            below += n
        elif threshold > low:
            below += n * (threshold - low) * 10
    return below / total


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def training_distribution(*, version: ModelVersion | None) -> dict[str, int] | None:
    """Labels per class of the version's training set: the pool split's labels up to its
    last label id that were current when it was trained (one aggregate query)."""
    if version is None or version.last_label_id is None:
        return None
    trained_at = version.started_at or version.created_at
    # A trained version's set never changes: remembered (a project's labels are many).
    key = f"monitoring:training:{version.pk}:{version.last_label_id}:{trained_at.timestamp()}"
    if version.status == ModelVersion.Status.READY and (counts := cache.get(key)) is not None:
        return counts
    labels = (Label.objects
              .filter(sample__project_id=version.project_id, sample__split=Sample.Split.POOL,
                      pk__lte=version.last_label_id)
              .filter(Q(superseded_at__isnull=True) | Q(superseded_at__gt=trained_at))
              .values("value").annotate(n=Count("pk")).order_by())
    counts = {row["value"]: row["n"] for row in labels}
    if version.status == ModelVersion.Status.READY:
        cache.set(key, counts, TRAINING_COUNTS_SECONDS)
    return counts


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def monitoring_summary(*, project: Project, window: str = "24h", version: int | None = None,
                       now: dt.datetime | None = None) -> dict:
    """Everything the monitoring JSON and page show for ``project`` over ``window``,
    optionally under one model version's number."""
    spec = WINDOWS[window]
    end = now or timezone.now()
    start = end - spec.span
    first = start.replace(second=0, microsecond=0)  # the minute the window starts in
    rows = RollupWindow(project=project, version=version, first=first, end=end,
                        hours=spec.step >= dt.timedelta(hours=1))

    columns = ("requests", "rows", *ERROR_COLUMNS, *LATENCY_COLUMNS, *CONFIDENCE_COLUMNS)
    buckets, totals = rows.buckets(spec.trunc, (*columns, "confidence_sum"))
    series = [
        {"t": row["bucket"].isoformat().replace("+00:00", "Z"), "requests": row["requests"],
         "rows": row["rows"], "errors": sum(row[c] for c in ERROR_COLUMNS)}
        for row in buckets
    ]
    requests = totals["requests"]
    errors = sum(totals[c] for c in ERROR_COLUMNS)
    latency = [totals[c] for c in LATENCY_COLUMNS]
    histogram = [totals[c] for c in CONFIDENCE_COLUMNS]
    scored = sum(histogram)
    mean_confidence = totals["confidence_sum"] / scored if scored else None

    predicted = rows.classes()
    model = _version(project, version)

    feedback = PredictionLog.objects.filter(project=project, feedback_at__gt=start,
                                            feedback_at__lte=end)
    if version is not None:
        feedback = feedback.filter(model_version__number=version)
    # Counted on indexed columns (not the pk), so the feedback index alone answers. Labels of
    # routed inputs are counted apart: rules route the inputs the model is least sure of;
    # those of inputs a rule drew at random (``sampled``) are live accuracy.
    right = Q(true_label=F("predicted_label"))
    routed = Q(feedback_source=PredictionLog.FeedbackSource.ROUTED)
    counted = feedback.aggregate(
        n=Count("feedback_at", filter=~routed), correct=Count("feedback_at", filter=right & ~routed),
        sampled=Count("feedback_at", filter=Q(feedback_source=PredictionLog.FeedbackSource.SAMPLED)),
        routed_n=Count("feedback_at", filter=routed),
        routed_correct=Count("feedback_at", filter=right & routed))
    drift, drift_note = input_drift(project=project, version=model, window=spec.name,
                                    start=start, end=end)
    return {
        "window": spec.name,
        "from": start, "to": end,
        "version": version,
        "served_version": model.number if model is not None and version is None else None,
        "traffic": {"requests": requests, "rows": totals["rows"], "series": series,
                    "step_seconds": int(spec.step.total_seconds())},
        "errors": {"by_status": {ERROR_STATUS[c]: totals[c] for c in ERROR_COLUMNS},
                   "total": errors, "rate": _round(errors / requests if requests else None)},
        "latency_ms": {p: _round(latency_percentile(latency, q), 2)
                       for p, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        "confidence": {"mean": _round(mean_confidence), "histogram": histogram,
                       "low_threshold": settings.MONITORING_LOW_CONFIDENCE,
                       "low_share": _round(share_below(histogram, settings.MONITORING_LOW_CONFIDENCE))},
        "classes": {"predicted": predicted, "training": training_distribution(version=model),
                    "training_version": model.number if model is not None else None},
        "live_accuracy": {**_accuracy(counted["correct"], counted["n"]),
                          "sampled": counted["sampled"]},
        "routed_accuracy": {**_accuracy(counted["routed_correct"], counted["routed_n"]),
                            "note": ROUTED_NOTE},
        "estimated_accuracy": {"value": _round(mean_confidence), "method": "mean max-probability (CBPE)",
                               "note": ESTIMATE_NOTE},
        "drift": drift, "drift_note": drift_note,
    }


ROUTED_NOTE = ("labels of production inputs routed to annotators by a rule: chosen as the "
               "least certain, so this is lower than the model's accuracy on its traffic; "
               "live accuracy counts client feedback and the inputs drawn at random only")


def _accuracy(correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"n": n, "correct": correct, "accuracy": _round(correct / n if n else None),
            "low": _round(low), "high": _round(high)}


def _version(project: Project, number: int | None) -> ModelVersion | None:
    """The version asked for, else the served one (whose training set the classes compare to)."""
    versions = ModelVersion.objects.filter(project=project)
    if number is not None:
        return versions.filter(number=number).first()
    return versions.filter(is_served=True).first()


def monitoring_versions(*, project: Project) -> list[int]:
    """Version numbers to choose from: the project's ready versions, newest first."""
    return list(ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY)
                .order_by("-number").values_list("number", flat=True))
