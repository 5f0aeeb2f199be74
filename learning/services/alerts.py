"""Alerts of the retrain cycle: what it ran into and healed, shown on the project page."""
from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from learning.models import Alert, ModelVersion


def _alert(*, project_id: int, version: ModelVersion | None, kind: str, message: str) -> None:
    """Record an alert; the open one of the same version and kind is updated and counted."""
    version_id = version.pk if version is not None else None
    updated = Alert.objects.filter(
        project_id=project_id, version_id=version_id, kind=kind, resolved_at__isnull=True
    ).update(message=message, count=F("count") + 1, last_seen_at=timezone.now())
    if not updated:
        Alert.objects.create(project_id=project_id, version_id=version_id, kind=kind,
                             message=message)


def _alerts_resolve(*, project_id: int, number: int) -> None:
    """A cycle completed with version ``number``: the alerts of it and earlier ones close."""
    Alert.objects.filter(project_id=project_id, resolved_at__isnull=True).exclude(
        version__number__gt=number
    ).update(resolved_at=timezone.now())
