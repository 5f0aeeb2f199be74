"""Reads of rules, their firings and open alerts (the API, the Settings and monitoring pages)."""
from __future__ import annotations

import datetime as dt

from django.db.models import Subquery
from django.utils import timezone

from annotation.models import Project
from serving.models import PredictionLog, Rule, RuleFiring


def rule_list(*, project: Project) -> list[Rule]:
    return list(Rule.objects.filter(project=project).order_by("pk"))


def rule_get(*, project: Project, rule_id: int) -> Rule | None:
    return Rule.objects.filter(project=project, pk=rule_id).first()


def rule_firings(*, rule: Rule, limit: int = 100) -> list[RuleFiring]:
    """The rule's firings, newest first, with their versions."""
    return list(RuleFiring.objects.filter(rule=rule).select_related("version")
                .order_by("-fired_at", "-pk")[:limit])


def project_firings(*, project: Project, limit: int = 10) -> list[RuleFiring]:
    return list(RuleFiring.objects.filter(project=project).select_related("version", "rule")
                .order_by("-fired_at", "-pk")[:limit])


def alerts_open(*, project: Project) -> list[RuleFiring]:
    return list(RuleFiring.objects.filter(project=project, alerted=True,
                                          alert_resolved_at__isnull=True)
                .select_related("rule").order_by("-fired_at"))


# The page never scans a window of raw logs: the count looks at this many newest ones.
UNKEPT_LOOKBACK = 2_000


def routing_unkept(*, project: Project, hours: int = 24) -> int:
    """Among the newest ``UNKEPT_LOOKBACK`` predictions of the last ``hours``, the successful
    ones whose instance was not kept (too large to route to annotators)."""
    since = timezone.now() - dt.timedelta(hours=hours)
    newest = (PredictionLog.objects.filter(project=project, created_at__gte=since)
              .order_by("-created_at").values("pk")[:UNKEPT_LOOKBACK])
    return PredictionLog.objects.filter(pk__in=Subquery(newest),
                                        outcome=PredictionLog.Outcome.OK,
                                        instance__isnull=True, sample_id__isnull=True,
                                        feedback_at__isnull=True).count()


def firing_output(firing: RuleFiring) -> dict:
    """A firing as the API shows it."""
    version = firing.version
    return {
        "id": firing.pk, "rule": firing.rule_id, "fired_at": firing.fired_at,
        "condition": firing.condition, "value": firing.value, "count": firing.count,
        "actions": firing.actions, "sample_ids": firing.sample_ids, "notes": firing.notes,
        "retrain": firing.retrain or None,
        "version": version.number if version is not None else None,
        "version_status": version.status if version is not None else None,
        "version_served": version.is_served if version is not None else None,
        "alert": ({"open": firing.alert_resolved_at is None,
                   "resolved_at": firing.alert_resolved_at} if firing.alerted else None),
    }


def rule_output(rule: Rule) -> dict:
    return {
        "id": rule.pk, "name": rule.name, "metric": rule.metric, "column": rule.column,
        "op": rule.op, "threshold": rule.threshold, "window": rule.window,
        "min_count": rule.min_count, "cooldown_minutes": rule.cooldown_minutes,
        "actions": rule.actions, "route_count": rule.route_count,
        "random_share": rule.random_share, "enabled": rule.enabled,
        "broken_reason": rule.broken_reason, "last_evaluated_at": rule.last_evaluated_at,
        "last_value": rule.last_value, "last_count": rule.last_count,
        "last_status": rule.last_status, "last_fired_at": rule.last_fired_at,
        "created_at": rule.created_at, "updated_at": rule.updated_at,
    }
