"""Samples, the import jobs that bring them, and annotators' leases on them."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models import _random_key, import_file_path, sample_image_path
from annotation.models.projects import Project


class SampleQuerySet(models.QuerySet):
    def in_pool(self) -> SampleQuerySet:
        return self.filter(split=Sample.Split.POOL)

    def in_test(self) -> SampleQuerySet:
        return self.filter(split=Sample.Split.TEST)

    def unlabeled(self) -> SampleQuerySet:
        return self.filter(status=Sample.Status.UNLABELED)

    def labeled(self) -> SampleQuerySet:
        return self.filter(status=Sample.Status.LABELED)


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
        PRODUCTION = "production"  # a production input a rule routed to labeling
        FEEDBACK = "feedback"  # a production input a client sent feedback on

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
    # Images: the sha256 of the stored file's bytes, so a production input routed to labeling
    # is never a copy of a sample the project has ("" for texts, rows, and older images).
    content_sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")
    # A tag for undoing a failed import. No database constraint: on PostgreSQL each checked
    # foreign key costs a trigger call per copied row; Django still applies SET_NULL.
    import_job = models.ForeignKey(
        ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="samples",
        db_constraint=False,
    )
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.POOL)
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.IMPORT)
    # Routed production inputs: the prediction that was made on them, as
    # {"label", "confidence", "version"} (null for every other sample).
    prediction = models.JSONField(null=True, blank=True)
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
            models.Index(fields=["project", "content_sha256"], name="sample_content_sha256",
                         condition=~models.Q(content_sha256="")),
            # The samples a rescoring ranked (score above 0: each chunk's top), by id: a
            # chunk finds its earlier top in its id range without reading the range's rows.
            models.Index(fields=["project", "id"], name="sample_scored",
                         condition=models.Q(score__gt=0)),
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
