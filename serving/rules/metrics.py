"""What a rule reads: one metric of the monitoring over its window, with the number of
observations behind it. ``None`` as the value means no data (nothing to compare yet)."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from annotation.models import Label, Project
from annotation.selectors import label_count_running
from learning.models import ModelVersion
from serving.models import Rule
from serving.monitoring_selectors import monitoring_summary


class RuleBroken(Exception):
    """The rule cannot be evaluated as written; the message says why."""


@dataclass(frozen=True)
class Reading:
    value: float | None
    count: int
    note: str = ""  # why there is no value


def _served(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_served=True).first()


def _summary(rule: Rule, served: ModelVersion | None, now: dt.datetime, *, by_version: bool):
    # Model metrics read the served version's predictions only, so a new model is judged on
    # its own traffic and feedback, not on its predecessor's.
    version = served.number if by_version and served is not None else None
    return monitoring_summary(project=rule.project, window=rule.window, version=version, now=now)


def _drift(rule: Rule, summary: dict) -> Reading:
    drift = summary.get("drift")
    if drift is None:
        return Reading(None, 0, "no data: drift is not computed for this window")
    count = int(drift.get("n") or 0)
    if not rule.column:
        return Reading(drift.get("share"), count)
    for feature in drift.get("features") or ():
        if feature.get("name") == rule.column:
            return Reading(feature.get("score"), count)
    names = ", ".join(str(f.get("name")) for f in drift.get("features") or ()) or "none"
    raise RuleBroken(f"drift has no column {rule.column!r} (columns: {names})")


def metric_read(rule: Rule, now: dt.datetime) -> Reading:
    """Read ``rule``'s metric at ``now``; raise ``RuleBroken`` when the rule cannot be read."""
    project = rule.project
    served = _served(project)
    metric = rule.metric
    if metric == Rule.Metric.LIVE_ACCURACY:
        live = _summary(rule, served, now, by_version=True)["live_accuracy"]
        reading = Reading(live["accuracy"], live["n"], "no data: no feedback in the window")
    elif metric == Rule.Metric.ESTIMATED_ACCURACY:
        summary = _summary(rule, served, now, by_version=True)
        reading = Reading(summary["estimated_accuracy"]["value"],
                          sum(summary["confidence"]["histogram"]), "no data: no predictions")
    elif metric == Rule.Metric.LOW_CONFIDENCE_SHARE:
        confidence = _summary(rule, served, now, by_version=True)["confidence"]
        reading = Reading(confidence["low_share"], sum(confidence["histogram"]),
                          "no data: no predictions")
    elif metric == Rule.Metric.ERROR_RATE:
        summary = _summary(rule, served, now, by_version=False)
        reading = Reading(summary["errors"]["rate"], summary["traffic"]["requests"],
                          "no data: no requests")
    elif metric == Rule.Metric.DRIFT:
        reading = _drift(rule, _summary(rule, served, now, by_version=True))
    elif metric == Rule.Metric.LABELS_SINCE_MODEL:
        if served is None or served.last_label_id is None:
            n = label_count_running(project=project)
        else:
            n = Label.objects.current().filter(sample__project=project,
                                               pk__gt=served.last_label_id).count()
        reading = Reading(float(n), n)
    elif metric == Rule.Metric.MODEL_AGE_HOURS:
        if served is None:
            return Reading(None, 0, "no data: no served model")
        since = served.finished_at or served.created_at
        reading = Reading((now - since).total_seconds() / 3600, 1)
    else:
        raise RuleBroken(f"unknown metric {metric!r}")
    if reading.value is not None:
        if isinstance(reading.value, bool) or not isinstance(reading.value, (int, float)):
            raise RuleBroken(f"{metric} gave {reading.value!r}, not a number")
        if not math.isfinite(reading.value):
            raise RuleBroken(f"{metric} gave {reading.value!r}, not a finite number")
    return reading


def compare(op: str, value: float, threshold: float) -> bool:
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    raise RuleBroken(f"unknown comparison {op!r}")
