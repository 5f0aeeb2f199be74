"""Projects, their samples and the labels annotators give them."""
from __future__ import annotations

import random

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


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
        # Diverse margin over the batch plus 10% random picks (learning.strategies).
        DEFAULT = "default"

    class Promotion(models.TextChoices):
        BEST = "best", "best macro-F1 on the test split"
        LATEST = "latest", "latest ready version"

    # The estimators a project can choose, stored as model_spec["estimator"]. The registry is
    # learning.estimators.ESTIMATORS, which annotation cannot import (it is the lower layer);
    # tests/learning/test_estimators.py checks that the two lists agree.
    class Estimator(models.TextChoices):
        LOGREG = "logreg", "logistic regression"
        LINEAR_SVM = "linear_svm", "linear SVM (calibrated)"
        RANDOM_FOREST = "random_forest", "random forest"
        HIST_GB = "hist_gb", "histogram gradient boosting"

    # What trains when model_spec names no estimator (learning's default for every kind).
    DEFAULT_ESTIMATOR = Estimator.LOGREG

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    labels = models.JSONField(help_text="Ordered list of label values.")
    batch_size = models.PositiveIntegerField(default=20)
    query_strategy = models.CharField(
        max_length=30, choices=Strategy.choices, default=Strategy.DEFAULT
    )
    promotion = models.CharField(
        max_length=10, choices=Promotion.choices, default=Promotion.BEST,
        help_text="Which ready version is served: the best on the test split, or the latest.",
    )
    model_spec = models.JSONField(default=dict, blank=True)
    test_fraction = models.FloatField(default=0.2)
    image_size = models.PositiveIntegerField(
        default=28, help_text="Images are resized to this square size before featurizing."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects"
    )
    # Tabular projects: the feature columns of the first import; later imports must match.
    columns = models.JSONField(default=list, blank=True)
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="How many different annotators label each sample."
    )
    # One key per label, in label order; empty means the default (the label itself when
    # every label is one character, else 1-9).
    keys = models.JSONField(default=list, blank=True)
    show_suggestion = models.BooleanField(
        default=True, help_text="Show annotators the model's guess (hide it to avoid anchoring)."
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
            models.CheckConstraint(condition=Q(overlap__gte=1), name="overlap_positive"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def estimator(self) -> str:
        """The estimator the next retrain fits: the model spec's, else the default."""
        return (self.model_spec or {}).get("estimator") or self.DEFAULT_ESTIMATOR

    @property
    def estimator_params(self) -> dict:
        """The estimator parameters of the model spec (empty: the estimator's defaults)."""
        return dict((self.model_spec or {}).get("params") or {})

    def label_keys(self) -> list[tuple[str, str]]:
        """Return (key, label) pairs: the configured keys, else the label itself when every
        label is one character (and none is a command key), else 1-9."""
        if self.keys and len(self.keys) == len(self.labels):
            return list(zip(self.keys, self.labels))
        if all(len(label) == 1 and label.lower() not in COMMAND_KEYS for label in self.labels):
            return [(label, label) for label in self.labels]
        return [(str(i + 1) if i < 9 else "", label) for i, label in enumerate(self.labels)]


# Keys the labeling page keeps for itself: skip, undo, zoom, help.
COMMAND_KEYS = ("s", "u", "z", "?")


class ProjectSettingsChange(models.Model):
    """One setting of a project changed: who (no user: an operator's command), when, from
    what to what. Written by the settings service in the transaction of the change."""

    class Field(models.TextChoices):
        QUERY_STRATEGY = "query_strategy", "query strategy"
        ESTIMATOR = "estimator", "model"
        C = "C", "model: C"
        N_ESTIMATORS = "n_estimators", "model: trees"
        PROMOTION = "promotion", "promotion policy"
        TEST_FRACTION = "test_fraction", "test fraction"
        BATCH_SIZE = "batch_size", "batch size"
        OVERLAP = "overlap", "overlap"
        KEYS = "keys", "label keys"
        SHOW_SUGGESTION = "show_suggestion", "show suggestion"

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="settings_changes", db_index=False
    )
    # Kept like an import's user: a change's author is not erased with their account.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # One time for every field changed together, so they list in the order they were given.
    changed_at = models.DateTimeField(default=timezone.now)
    field = models.CharField(max_length=30, choices=Field.choices)
    # Empty: the default (an estimator parameter left to the estimator).
    old_value = models.CharField(max_length=500, blank=True, default="")
    new_value = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-changed_at", "pk"]
        indexes = [
            models.Index(fields=["project", "-changed_at"], name="settings_change_by_project"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} {self.field}: {self.old_value!r} -> {self.new_value!r}"


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


def import_file_path(instance: ImportJob, filename: str) -> str:
    return f"imports/{instance.project_id}/{filename}"


class ImportJob(models.Model):
    """One uploaded file on its way into a project's samples, with progress and a report.

    Every row is checked before any is written; rows are then written in batches tagged
    with the job, so a failed or interrupted import can delete exactly what it wrote.
    """

    class Format(models.TextChoices):
        CSV = "csv"
        JSONL = "jsonl"
        ZIP = "zip"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Phase(models.TextChoices):
        CHECKING = "checking"
        WRITING = "writing"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    format = models.CharField(max_length=10, choices=Format.choices)
    # Blank when the file is read in place (the import_samples command).
    file = models.FileField(upload_to=import_file_path, blank=True, default="", max_length=300)
    original_name = models.CharField(max_length=255, blank=True, default="")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=10, choices=Phase.choices, blank=True, default="")
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_done = models.PositiveIntegerField(default=0)
    rows_ok = models.PositiveIntegerField(default=0)
    rows_bad = models.PositiveIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    bytes_done = models.PositiveBigIntegerField(default=0)
    # {"message": str, "errors": [{"row": n, "line"|"entry": ..., "error": str}], "truncated": bool}
    report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def percent(self) -> float:
        """Return progress of the current phase in percent: by rows when their number is
        known (archives, the writing phase), else by bytes read."""
        if self.status == self.Status.DONE:
            return 100.0
        if self.rows_total:
            return min(100.0, 100.0 * self.rows_done / self.rows_total)
        if self.bytes_total:
            return min(100.0, 100.0 * self.bytes_done / self.bytes_total)
        return 0.0


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

    # No index of its own: the composite indexes below all start with project.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="samples", db_index=False
    )
    external_id = models.CharField(max_length=200, blank=True, default="")
    text = models.TextField(blank=True, default="")
    values = models.JSONField(null=True, blank=True, help_text="Tabular row: column -> value.")
    image = models.FileField(upload_to=sample_image_path, blank=True, default="", max_length=200)
    thumbnail = models.FileField(blank=True, default="", max_length=200)
    # A tag for undoing a failed import. No database constraint: on PostgreSQL each checked
    # foreign key costs a trigger call per copied row; Django still applies SET_NULL.
    import_job = models.ForeignKey(
        ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="samples",
        db_constraint=False,
    )
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.POOL)
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.IMPORT)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNLABELED)
    # Uncertainty under the served model; higher is asked first. All 0 before the first model,
    # so the queue falls back to random_key order (non-null keeps the index order usable).
    score = models.FloatField(default=0.0)
    # A fixed random number per sample: random order for the test split and the cold start.
    random_key = models.FloatField(default=_random_key)
    # Current labels from distinct annotators; status becomes labeled at the project's overlap.
    label_count = models.PositiveSmallIntegerField(default=0, db_default=0)
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


class Lease(models.Model):
    """One annotator's hold on one sample, so overlap k lets k annotators hold it at once.

    A lease is live until ``expires_at``. A skip keeps the row (``skipped``) so the sample
    never comes back to that annotator, and no longer holds a place for them.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    expires_at = models.DateTimeField()
    skipped = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sample", "annotator"], name="one_lease_per_annotator")
        ]
        indexes = [
            models.Index(fields=["sample", "expires_at"], name="lease_live_by_sample"),
            models.Index(fields=["project", "annotator", "expires_at"], name="lease_held"),
        ]

    def __str__(self) -> str:
        return f"{self.sample_id}@{self.annotator_id}"


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
