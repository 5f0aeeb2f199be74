"""Projects, their samples and the labels annotators give them."""
from __future__ import annotations

import random

from django.conf import settings
from django.db import models
from django.db.models import Q


class Project(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image"
        TEXT = "text"
        TABULAR = "tabular"

    class Strategy(models.TextChoices):
        LEAST_CONFIDENT = "least_confident"
        MARGIN = "margin"
        ENTROPY = "entropy"
        RANDOM = "random"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    labels = models.JSONField(help_text="Ordered list of label values.")
    batch_size = models.PositiveIntegerField(default=20)
    query_strategy = models.CharField(
        max_length=30, choices=Strategy.choices, default=Strategy.LEAST_CONFIDENT
    )
    model_spec = models.JSONField(default=dict, blank=True)
    test_fraction = models.FloatField(default=0.2)
    image_size = models.PositiveIntegerField(
        default=28, help_text="Images are resized to this square size before featurizing."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(test_fraction__gte=0) & Q(test_fraction__lt=1),
                name="test_fraction_in_unit_interval",
            ),
            models.CheckConstraint(condition=Q(batch_size__gte=1), name="batch_size_positive"),
        ]

    def __str__(self) -> str:
        return self.slug

    def label_keys(self) -> list[tuple[str, str]]:
        """Return (key, label) pairs: the label itself when it is one character, else 1-9."""
        if all(len(label) == 1 for label in self.labels):
            return [(label, label) for label in self.labels]
        return [(str(i + 1) if i < 9 else "", label) for i, label in enumerate(self.labels)]


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        SCIENTIST = "scientist"
        ANNOTATOR = "annotator"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")
        ]


def _random_key() -> float:
    return random.random()


class SampleQuerySet(models.QuerySet):
    def in_pool(self) -> SampleQuerySet:
        return self.filter(split=Sample.Split.POOL)

    def in_test(self) -> SampleQuerySet:
        return self.filter(split=Sample.Split.TEST)

    def unlabeled(self) -> SampleQuerySet:
        return self.filter(status=Sample.Status.UNLABELED)

    def labeled(self) -> SampleQuerySet:
        return self.filter(status=Sample.Status.LABELED)


def sample_image_path(instance: Sample, filename: str) -> str:
    return f"samples/{instance.project_id}/{filename}"


class Sample(models.Model):
    class Split(models.TextChoices):
        POOL = "pool"
        TEST = "test"

    class Origin(models.TextChoices):
        IMPORT = "import"
        PRODUCTION = "production"

    class Status(models.TextChoices):
        UNLABELED = "unlabeled"
        LABELED = "labeled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="samples")
    external_id = models.CharField(max_length=200, blank=True, default="")
    text = models.TextField(blank=True, default="")
    values = models.JSONField(null=True, blank=True, help_text="Tabular row: column -> value.")
    image = models.FileField(upload_to=sample_image_path, blank=True, default="")
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.POOL)
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.IMPORT)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNLABELED)
    # Uncertainty under the served model; higher is asked first. All 0 before the first model,
    # so the queue falls back to random_key order (non-null keeps the index order usable).
    score = models.FloatField(default=0.0)
    # A fixed random number per sample: random order for the test split and the cold start.
    random_key = models.FloatField(default=_random_key)
    leased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_expires = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SampleQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["project", "split", "status", "-score", "random_key"],
                name="sample_queue_by_score",
            ),
            models.Index(
                fields=["project", "split", "status", "random_key"], name="sample_queue_random"
            ),
            models.Index(fields=["project", "external_id"], name="sample_external_id"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.pk}"


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

    objects = LabelQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sample", "annotator"],
                condition=Q(superseded_at__isnull=True),
                name="one_current_label_per_annotator",
            )
        ]
        indexes = [models.Index(fields=["sample", "superseded_at"], name="label_current")]

    def __str__(self) -> str:
        return f"{self.sample_id}={self.value}"
