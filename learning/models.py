"""Model versions: one row per training run, with its metrics and artifact."""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models import Project


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        TRAINING = "training"
        READY = "ready"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        BATCH = "batch"
        MANUAL = "manual"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.BATCH)
    estimator = models.CharField(max_length=100, blank=True, default="")
    query_strategy = models.CharField(max_length=30, blank=True, default="")
    # How many current labels the project had when this version was requested; batches
    # are counted from the newest version's value, so triggers coalesce naturally.
    requested_at_label_count = models.PositiveIntegerField(default=0)
    # What the model was fitted on: enough to reproduce the iteration.
    trained_on_label_count = models.PositiveIntegerField(null=True, blank=True)
    test_label_count = models.PositiveIntegerField(null=True, blank=True)
    last_label_id = models.BigIntegerField(null=True, blank=True)
    label_snapshot_sha256 = models.CharField(max_length=64, blank=True, default="")
    accuracy = models.FloatField(null=True, blank=True)
    macro_f1 = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    fit_seconds = models.FloatField(null=True, blank=True)
    score_seconds = models.FloatField(null=True, blank=True)
    # Set once every chunk of the pool rescoring is written; the chunks count themselves.
    scored_sample_count = models.PositiveIntegerField(null=True, blank=True)
    score_chunks_total = models.PositiveIntegerField(null=True, blank=True)
    score_chunks_done = models.PositiveIntegerField(default=0)
    score_rows_done = models.PositiveIntegerField(default=0)
    scoring_started_at = models.DateTimeField(null=True, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True, default="")
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    sklearn_version = models.CharField(max_length=30, blank=True, default="")
    is_served = models.BooleanField(default=False)
    promotion_note = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="one_number_per_project"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_served=True), name="one_served_model_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} v{self.number} ({self.status})"


class CachedFile(models.Model):
    """The sha256 of a file a worker pickled under ``ARTIFACT_ROOT`` for its own later use.

    Recorded when the file is written, in the database rather than beside the file, so
    that whoever can write to the artifact root cannot also vouch for what they wrote: a
    file is unpickled only when its bytes still hash to the value recorded here
    (``learning.artifacts``). Model artifacts keep theirs on ``ModelVersion``.
    """

    class Kind(models.TextChoices):
        FEATURIZER = "featurizer"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(max_length=64)
    path = models.CharField(max_length=500)  # relative to ARTIFACT_ROOT
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "kind", "key"],
                                    name="one_cached_file_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} {self.kind} {self.key}"
