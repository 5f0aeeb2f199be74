"""API tokens and the log of every prediction served."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models import Project, Sample
from learning.models import ModelVersion


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        PREDICT = "predict"
        FEEDBACK = "feedback"
        ADMIN = "admin"
        LABEL = "label"

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


class PredictionLog(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok"
        CLIENT_ERROR = "client_error"
        SERVER_ERROR = "server_error"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The id returned with each prediction, so clients can send feedback on it later; the
    # row's own pk does not exist yet when the response leaves (logs are written in bulk).
    prediction_id = models.UUIDField(null=True, blank=True, unique=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField()
    latency_ms = models.FloatField()
    predicted_label = models.CharField(max_length=200, blank=True, default="")
    confidence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()
    # The raw instance (as the client sent it, e.g. {"image_base64": ...}), kept only for
    # successful predictions and only up to PREDICTION_LOG_INSTANCE_MAX_BYTES, so feedback
    # can quote just the prediction id; larger instances must be resent with the feedback.
    instance = models.JSONField(null=True, blank=True)
    # Client feedback: the true label, when it came, and the production sample it became.
    true_label = models.CharField(max_length=200, blank=True, default="")
    feedback_at = models.DateTimeField(null=True, blank=True)
    sample = models.ForeignKey(
        Sample, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )

    class Meta:
        indexes = [
            models.Index(fields=["project", "created_at"], name="predictionlog_by_time"),
            models.Index(fields=["project", "feedback_at"], name="predictionlog_by_feedback",
                         condition=models.Q(feedback_at__isnull=False)),
        ]

    @property
    def is_correct(self) -> bool | None:
        """Whether the prediction matched the true label; None before feedback."""
        return None if self.feedback_at is None else self.true_label == self.predicted_label
