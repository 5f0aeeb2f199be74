"""Alerts of KPI rules: a firing with the ``alert`` action is an open alert until its rule's
condition no longer holds; owners are emailed through Django's email backend."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from annotation.models import Membership, Project
from serving.models import Rule, RuleFiring

logger = logging.getLogger(__name__)


def owner_addresses(project: Project) -> list[str]:
    """The email addresses of the project's owner and of every member with the owner role."""
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    owners = users.filter(pk=project.owner_id) | users.filter(
        pk__in=Membership.objects.filter(project=project, role=Membership.Role.OWNER)
        .values("user_id"))
    return sorted(set(owners.values_list("email", flat=True)))


def alert_mail(*, firing_id: int) -> int:
    """Email the firing's alert to the project's owners; never raises (a mail server that
    is down is logged). Returns how many addresses it went to."""
    firing = RuleFiring.objects.select_related("rule", "project").filter(pk=firing_id).first()
    if firing is None:
        return 0
    project = firing.project
    to = owner_addresses(project)
    if not to:
        return 0
    subject = f"[{project.slug}] rule alert: {firing.condition}"
    body = (f"Project {project.name} ({project.slug}): the rule {firing.rule.name or firing.condition}"
            f" fired at {firing.fired_at:%Y-%m-%d %H:%M} UTC.\n\n"
            f"{firing.rule.metric} = {firing.value:.4g} on {firing.count} observation(s); "
            f"condition {firing.condition}.\nActions: {', '.join(firing.actions) or 'none'}.\n"
            + "".join(f"- {note}\n" for note in firing.notes))
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
    except Exception:  # noqa: BLE001 - an alert's mail never breaks the evaluation
        logger.exception("could not mail the alert of firing %s", firing_id)
        return 0
    return len(to)


def alerts_resolve(*, rule: Rule, now: dt.datetime) -> int:
    """The rule's condition no longer holds: its open alerts close."""
    return RuleFiring.objects.filter(rule=rule, alerted=True, alert_resolved_at__isnull=True
                                     ).update(alert_resolved_at=now)
