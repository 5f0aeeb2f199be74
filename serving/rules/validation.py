"""The one check of a rule's JSON, for the API, the Settings page and the services."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from core.errors import DomainError
from serving.models import Rule
from serving.monitoring_selectors import WINDOWS

FIELDS = ("name", "metric", "column", "op", "threshold", "window", "min_count",
          "cooldown_minutes", "actions", "route_count", "random_share", "enabled")
REQUIRED = ("metric", "op", "threshold", "actions")
DEFAULTS: dict[str, Any] = {"name": "", "column": "", "window": "1h", "min_count": 0,
                            "cooldown_minutes": 60, "route_count": 20, "random_share": Rule.RANDOM_SHARE_DEFAULT,
                            "enabled": True}
# Metrics that are shares (0..1) and those that count from 0 up.
UNIT_METRICS = {Rule.Metric.LIVE_ACCURACY, Rule.Metric.ESTIMATED_ACCURACY,
                Rule.Metric.LOW_CONFIDENCE_SHARE, Rule.Metric.ERROR_RATE}
MIN_COUNT_MAX = 10**9
COOLDOWN_MIN, COOLDOWN_MAX = 1, 60 * 24 * 365
ROUTE_COUNT_MIN, ROUTE_COUNT_MAX = 1, 500


class InvalidRule(DomainError):
    """A rule refused; ``detail`` maps the field to its messages, like DRF's 400s."""

    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", detail={field: [message]})
        self.field = field


def _int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRule(field, f"give a whole number, not {value!r}")
    if not low <= value <= high:
        raise InvalidRule(field, f"give a number from {low} to {high}")
    return value


def _choice(field: str, value: Any, choices: list[str]) -> str:
    if value not in choices:
        raise InvalidRule(field, f"{value!r} is not one of {', '.join(choices)}")
    return value


def rule_check(data: Any, *, current: Rule | None = None) -> dict[str, Any]:
    """Return the rule's fields from ``data`` (the JSON of the contract), checked: every
    field named in the error. With ``current`` (a PATCH) missing fields keep their value."""
    if not isinstance(data, Mapping):
        raise InvalidRule("non_field_errors", "send a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidRule(unknown[0], f"unknown field; expected some of {', '.join(FIELDS)}")
    if current is None:
        for field in REQUIRED:
            if field not in data:
                raise InvalidRule(field, "this field is required")
        values = {**DEFAULTS, **data}
    else:
        values = {field: getattr(current, field) for field in FIELDS} | dict(data)
    out: dict[str, Any] = {}
    name = values["name"]
    if not isinstance(name, str) or len(name) > 200 or "\x00" in name:
        raise InvalidRule("name", "give a text of at most 200 characters")
    out["name"] = name
    out["metric"] = _choice("metric", values["metric"], list(Rule.Metric.values))
    column = values["column"] or ""
    if not isinstance(column, str) or len(column) > 200 or "\x00" in column:
        raise InvalidRule("column", "give a column name of at most 200 characters")
    if column and out["metric"] != Rule.Metric.DRIFT:
        raise InvalidRule("column", "only a drift rule names a column")
    out["column"] = column
    out["op"] = _choice("op", values["op"], list(Rule.Op.values))
    threshold = values["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold):
        raise InvalidRule("threshold", f"give a finite number, not {threshold!r}")
    if out["metric"] in UNIT_METRICS and not 0 <= threshold <= 1:
        raise InvalidRule("threshold", f"{out['metric']} is a share: give a number from 0 to 1")
    if threshold < 0:
        raise InvalidRule("threshold", f"{out['metric']} is never negative")
    out["threshold"] = float(threshold)
    out["window"] = _choice("window", values["window"], list(WINDOWS))
    out["min_count"] = _int("min_count", values["min_count"], 0, MIN_COUNT_MAX)
    out["cooldown_minutes"] = _int("cooldown_minutes", values["cooldown_minutes"],
                                   COOLDOWN_MIN, COOLDOWN_MAX)
    actions = values["actions"]
    if not isinstance(actions, list) or not actions:
        raise InvalidRule("actions", "give a list of one or more of retrain, route, alert")
    for action in actions:
        _choice("actions", action, list(Rule.Action.values))
    if len(set(actions)) != len(actions):
        raise InvalidRule("actions", "name each action once")
    # Route first: a retrain fired with routing waits for the routed samples' labels.
    out["actions"] = [a for a in ("route", "retrain", "alert") if a in actions]
    out["route_count"] = _int("route_count", values["route_count"], ROUTE_COUNT_MIN,
                              ROUTE_COUNT_MAX)
    share = values["random_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) \
            or not math.isfinite(share) or not 0 <= share <= 1:
        raise InvalidRule("random_share", f"give a share from 0 to 1, not {share!r}")
    out["random_share"] = float(share)
    if not isinstance(values["enabled"], bool):
        raise InvalidRule("enabled", "give true or false")
    out["enabled"] = values["enabled"]
    return out
