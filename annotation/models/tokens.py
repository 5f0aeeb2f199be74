"""API tokens: a project's credentials, a client's or a member's."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models.projects import Project


class ApiToken(models.Model):
    """A key to one project's API: a client's within its scopes, or a person's (``user``).

    Only a sha256 of the key is stored (``annotation.authentication``).
    """

    class Scope(models.TextChoices):
        PREDICT = "predict"
        FEEDBACK = "feedback"
        ADMIN = "admin"
        LABEL = "label"
        MONITOR = "monitor"  # read the monitoring JSON (and /metrics)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_tokens")
    # Set on personal tokens: the request acts as this user, with their role in ``project``.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="api_tokens",
    )
    name = models.CharField(max_length=100, blank=True, default="")
    # Only a sha256 of the key is stored; the key itself is shown once, at creation.
    key_hash = models.CharField(max_length=64, unique=True)
    key_prefix = models.CharField(max_length=12)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.project_id}:{self.key_prefix}…"

    @property
    def is_authenticated(self) -> bool:
        return True
