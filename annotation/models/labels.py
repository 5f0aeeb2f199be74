"""Labels and the running label counts the ledger keeps beside them."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models.projects import Project
from annotation.models.samples import Sample


class LabelCounts(models.Model):
    """Running label counts of a project, updated in the transaction of every label write.

    The labeling page and the test-split share read these instead of counting a large
    project's rows on every request.
    """

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, primary_key=True, related_name="label_counts"
    )
    labeled_pool = models.PositiveIntegerField(default=0)
    labeled_test = models.PositiveIntegerField(default=0)
    current_labels = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.project_id}: {self.labeled_pool}+{self.labeled_test}"


class LabelQuerySet(models.QuerySet):
    def current(self) -> LabelQuerySet:
        return self.filter(superseded_at__isnull=True)


class Label(models.Model):
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="labels"
    )
    value = models.CharField(max_length=200)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Corrections add a new label and stamp the old one, so history is never lost.
    superseded_at = models.DateTimeField(null=True, blank=True)
    is_correction = models.BooleanField(default=False, db_default=False)
    # Provenance, as numbers of learning's ModelVersion (annotation has no key to it): the
    # version the project served when the label was written (None before any model, and on
    # imported labels), and the version whose suggestion the annotator saw for this sample
    # (None when none was shown: held-out test samples, suggestions off, not loaded yet).
    served_version = models.PositiveIntegerField(null=True, blank=True)
    suggested_version = models.PositiveIntegerField(null=True, blank=True)

    objects = LabelQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sample", "annotator"],
                condition=Q(superseded_at__isnull=True),
                name="one_current_label_per_annotator",
            )
        ]
        indexes = [
            models.Index(fields=["sample", "superseded_at"], name="label_current"),
            # A person's labels over a time window (the annotators page), without reading
            # their whole history.
            models.Index(fields=["annotator", "created_at"], name="label_by_annotator_time"),
        ]

    def __str__(self) -> str:
        return f"{self.sample_id}={self.value}"
