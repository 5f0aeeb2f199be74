"""Evaluate rules (every minute, Celery beat's ``rules-evaluate``) and fire their actions.

Each rule is evaluated in its own transaction holding its row lock, and a firing claims the
rule with a compare-and-set on ``last_fired_at``, so concurrent evaluations fire a rule at
most once per cool-down on any database. A rule that cannot be read (unknown metric or
column, a value that is not a number, any error of its own) records why in
``broken_reason`` and is disabled until edited; the others go on, and the task never raises.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Sample
from learning.models import ModelVersion
from learning.services import model_version_request
from serving.models import Rule, RuleFiring
from serving.rules.alerts import alert_mail, alerts_resolve, owner_addresses
from serving.rules.metrics import RuleBroken, compare, metric_read
from serving.rules.routing import route_inputs, routed_feedback_sync

logger = logging.getLogger(__name__)


def rules_evaluate(*, now: dt.datetime | None = None) -> dict[int, str]:
    """Evaluate every enabled rule; return each rule's status. Routed samples' labels are
    turned into feedback first, and retrains waiting for them are requested when due.

    The retrains go first: a label committed between the two steps is then either missed by
    both (next minute) or seen by both, never a retrain requested on a label whose
    feedback is still missing."""
    now = now or timezone.now()
    rule_retrains_due(now=now)
    routed_feedback_sync(now=now)
    statuses: dict[int, str] = {}
    for rule_id in Rule.objects.filter(enabled=True).values_list("pk", flat=True):
        try:
            statuses[rule_id] = rule_evaluate(rule_id=rule_id, now=now)
        except DatabaseError:  # the database's trouble, not the rule's: try next minute
            logger.exception("rule %s: database error while evaluating", rule_id)
            statuses[rule_id] = "error"
        except Exception as exc:  # noqa: BLE001 - a broken rule never stops the others
            logger.exception("rule %s is broken", rule_id)
            statuses[rule_id] = _break(rule_id, now, f"evaluation failed: {type(exc).__name__}: {exc}")
    return statuses


def _break(rule_id: int, now: dt.datetime, reason: str) -> str:
    Rule.objects.filter(pk=rule_id).update(
        enabled=False, broken_reason=reason[:2000], last_evaluated_at=now,
        last_status="broken: off until edited")
    return "broken"


def rule_evaluate(*, rule_id: int, now: dt.datetime) -> str:
    """Evaluate one rule and fire it if its condition holds; return what it decided."""
    with transaction.atomic():
        rule = (Rule.objects.select_for_update().select_related("project")
                .filter(pk=rule_id, enabled=True).first())
        if rule is None:
            return "disabled"
        try:
            reading = metric_read(rule, now)
            holds = reading.value is not None and compare(rule.op, reading.value, rule.threshold)
        except (RuleBroken, ArithmeticError, ValueError, TypeError, KeyError) as exc:
            return _break(rule.pk, now, str(exc) or type(exc).__name__)
        if reading.value is None:
            return _no_data(rule, reading, now)
        if reading.count < rule.min_count:
            status = f"too few observations: {reading.count} < {rule.min_count}"
        elif not holds:
            status = "not met"
            alerts_resolve(rule=rule, now=now)
        else:
            status = _fire(rule, reading.value, reading.count, now)
        Rule.objects.filter(pk=rule.pk).update(
            last_evaluated_at=now, last_value=reading.value, last_count=reading.count,
            last_status=status[:200], no_data_since=None)
        return status


def _no_data(rule: Rule, reading, now: dt.datetime) -> str:
    """No data: nothing fires and the rule's open alerts close (nothing shows the condition
    any more). A rule without data for ``RULES_NO_DATA_HOURS`` since it was created, edited
    or last had data is switched off with the reason, until edited."""
    alerts_resolve(rule=rule, now=now)
    note = reading.note or "no data"
    since = rule.no_data_since
    if since is None:  # data until now, or none since the rule was made or edited
        since = now if rule.last_value is not None else max(rule.created_at, rule.updated_at)
    hours = settings.RULES_NO_DATA_HOURS
    if now - since >= dt.timedelta(hours=hours):
        return _break(rule.pk, now, f"{note} for {hours:g} h or more (since "
                                    f"{since:%Y-%m-%d %H:%M} UTC); fix the rule or its "
                                    "data, then edit it")
    Rule.objects.filter(pk=rule.pk).update(
        last_evaluated_at=now, last_value=None, last_count=reading.count,
        last_status=note[:200], no_data_since=since)
    return note


def _fire(rule: Rule, value: float, count: int, now: dt.datetime) -> str:
    cooled = now - dt.timedelta(minutes=rule.cooldown_minutes)
    claimed = Rule.objects.filter(pk=rule.pk).filter(
        Q(last_fired_at__isnull=True) | Q(last_fired_at__lte=cooled)).update(last_fired_at=now)
    if not claimed:
        last = Rule.objects.values_list("last_fired_at", flat=True).get(pk=rule.pk)
        until = last + dt.timedelta(minutes=rule.cooldown_minutes)
        return f"met; cooling down until {until:%Y-%m-%d %H:%M} UTC"
    firing = RuleFiring.objects.create(rule=rule, project=rule.project, fired_at=now,
                                       condition=str(rule), value=value, count=count)
    for action in rule.actions:
        try:
            with transaction.atomic():  # a failed action rolls back alone
                ACTIONS[action](rule, firing, now)
        except Exception as exc:  # noqa: BLE001 - recorded on the firing
            logger.exception("rule %s: action %s failed", rule.pk, action)
            firing.notes.append(f"{action} failed: {type(exc).__name__}: {exc}")
    firing.save()
    return "fired"


def _route(rule: Rule, firing: RuleFiring, now: dt.datetime) -> None:
    routed = route_inputs(project=rule.project, k=rule.route_count, window=rule.window, now=now,
                          random_share=rule.random_share)
    firing.notes.extend(routed.notes)
    if routed.sample_ids:
        firing.sample_ids = routed.sample_ids
        firing.actions.append(Rule.Action.ROUTE.value)


def _retrain(rule: Rule, firing: RuleFiring, now: dt.datetime) -> None:
    if firing.sample_ids:  # route ran first (the actions' order): label them, then train
        firing.retrain = RuleFiring.Retrain.WAITING
        firing.notes.append(f"retrain once the {len(firing.sample_ids)} routed samples are "
                            f"labeled, or in {rule.cooldown_minutes} min")
    else:
        _retrain_request(firing)
    firing.actions.append(Rule.Action.RETRAIN.value)


def _retrain_request(firing: RuleFiring) -> None:
    queued = ModelVersion.objects.filter(project=firing.project,
                                         status=ModelVersion.Status.QUEUED).first()
    version = model_version_request(project=firing.project, trigger=ModelVersion.Trigger.RULE)
    firing.version = version
    firing.retrain = RuleFiring.Retrain.REQUESTED
    firing.notes.append(f"retrain: v{version.number} "
                        + ("(already queued: at most one per project)" if queued else "queued")
                        + "; served only if it beats the served model on the test labels")


def _alert(rule: Rule, firing: RuleFiring, now: dt.datetime) -> None:
    firing.alerted = True
    firing.actions.append(Rule.Action.ALERT.value)
    to = owner_addresses(rule.project)
    firing.notes.append(f"alert mailed to {len(to)} owner address(es)" if to
                        else "alert recorded (no owner has an email address)")
    firing_id = firing.pk
    transaction.on_commit(lambda: alert_mail(firing_id=firing_id))


ACTIONS = {Rule.Action.ROUTE: _route, Rule.Action.RETRAIN: _retrain, Rule.Action.ALERT: _alert}


def rule_retrains_due(*, now: dt.datetime) -> int:
    """Request the retrains of firings that waited for their routed samples: all labeled,
    or the rule's cool-down has passed. Returns how many were requested."""
    done = 0
    for firing_id in RuleFiring.objects.filter(retrain=RuleFiring.Retrain.WAITING
                                               ).values_list("pk", flat=True):
        with transaction.atomic():
            firing = (RuleFiring.objects.select_for_update().select_related("rule", "project")
                      .filter(pk=firing_id, retrain=RuleFiring.Retrain.WAITING).first())
            if firing is None:
                continue
            labeled = Sample.objects.filter(pk__in=firing.sample_ids,
                                            status=Sample.Status.LABELED).count()
            waited = now - firing.fired_at >= dt.timedelta(minutes=firing.rule.cooldown_minutes)
            if labeled < len(firing.sample_ids) and not waited:
                continue
            firing.notes.append(f"{labeled} of {len(firing.sample_ids)} routed samples labeled")
            try:
                with transaction.atomic():
                    _retrain_request(firing)
            except Exception as exc:  # noqa: BLE001
                logger.exception("firing %s: retrain request failed", firing_id)
                firing.retrain = RuleFiring.Retrain.FAILED
                firing.notes.append(f"retrain failed: {type(exc).__name__}: {exc}")
            firing.save()
            done += 1
    return done
