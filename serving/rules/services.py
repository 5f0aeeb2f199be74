"""Writes of rules: create, change, delete (owners and scientists, or an admin token)."""
from __future__ import annotations

from typing import Any

from django.db import transaction

from annotation.models import Project
from serving.models import Rule
from serving.rules.validation import rule_check


@transaction.atomic
def rule_create(*, project: Project, data: Any) -> Rule:
    """Create a rule from its JSON (``validation.rule_check``; 400 naming the field)."""
    return Rule.objects.create(project=project, **rule_check(data))


@transaction.atomic
def rule_update(*, rule: Rule, data: Any) -> Rule:
    """Change the fields given; an edit clears a broken rule's reason and switches it back
    on (unless the edit says ``enabled: false``): it is evaluated again from the next minute."""
    rule = Rule.objects.select_for_update().get(pk=rule.pk)
    values = rule_check(data, current=rule)
    if rule.broken_reason and "enabled" not in data:
        values["enabled"] = True
    for field, value in values.items():
        setattr(rule, field, value)
    rule.broken_reason = ""
    rule.no_data_since = None  # an edit starts the wait for data again
    rule.save()
    return rule


@transaction.atomic
def rule_delete(*, rule: Rule) -> None:
    """Delete a rule with its firings."""
    Rule.objects.filter(pk=rule.pk).delete()
