"""The log of every prediction served, with the feedback clients send on it."""
from __future__ import annotations

from django.db import models

from annotation.models import ApiToken, Project, Sample
from learning.models import ModelVersion


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
    # Set when the writer had to change the row to store it (a text the database refuses,
    # an instance dropped, a deleted token or version): what it changed and why.
    note = models.TextField(blank=True, default="")

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
