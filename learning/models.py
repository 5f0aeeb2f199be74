"""Model versions: one row per training run, with its metrics and artifact; alerts of the cycle."""
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
        RULE = "rule"  # a KPI rule fired (serving/rules); promoted only if better
        SCHEDULE = "schedule"  # the project's cron schedule

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
    # The chunks of the pool rescoring not written yet, as [lo, hi, runs]: runs counts the
    # workers that started the chunk, so one that keeps killing its worker is given up.
    score_chunks_left = models.JSONField(default=list, blank=True)
    # The served version whose model rescored the pool for this retrain.
    scored_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Signs of life, so a cycle heals itself (learning.services.healing): when the version
    # was (re-)queued; when a task for it (training, or its pool's chunks) was last handed
    # to the broker, None when that send failed; how many were sent; how many times a worker
    # claimed it; and when the worker training it or scoring its pool last said so.
    queued_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True, default="")
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    sklearn_version = models.CharField(max_length=30, blank=True, default="")
    is_served = models.BooleanField(default=False)
    # When the version last began to be served (null: never served). "Roll back" goes to
    # the newest earlier version that was ever served.
    served_at = models.DateTimeField(null=True, blank=True)
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


class TrainingSnapshot(models.Model):
    """The ids of the labels a version was trained and tested on, recorded at training.

    Labels are never deleted (a correction supersedes one and adds another), so these ids
    name the exact training set however the labels change later. Stored compactly: the
    sorted ids as int64 deltas, zlib-compressed (``learning.label_snapshots``); their
    sha256 is ``ModelVersion.label_snapshot_sha256``, checked on every read.
    """

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE,
                                   related_name="training_snapshot", primary_key=True)
    label_count = models.PositiveIntegerField()
    label_ids = models.BinaryField()

    def __str__(self) -> str:
        return f"{self.version} ({self.label_count} labels)"


class SimulationRun(models.Model):
    """A ``simulate`` run recorded for a project: the mean learning curve per strategy, so
    the project page can draw the random baseline beside the project's own curve."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="simulation_runs")
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=300)
    model = models.CharField(max_length=100)
    batch_size = models.PositiveIntegerField()
    seeds = models.PositiveIntegerField()
    full_accuracy = models.FloatField()
    # {strategy: {"accuracy": [[labels, value], ...], "macro_f1": [[labels, value], ...],
    #             "labels_to_95": n|None, "labels_to_99": n|None}}
    curves = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.project_id} simulate {self.source} {self.created_at:%Y-%m-%d %H:%M}"


class DriftReference(models.Model):
    """What a version's production inputs are compared with for input drift, computed once
    when the version is trained (``learning.services.drift_reference``) and read by
    serving's monitoring: plain numbers, no pickle.

    ``features`` is a list of ``{"name", "values": [...]}`` (numeric) or ``{"name",
    "counts": {value: n}}`` (categorical). Tabular projects keep raw columns of a random
    sample of the project's samples; text and image projects keep that sample projected on
    the principal components of its featurized rows, and the model's confidence on the
    sample's rows it was not trained on. The components (``mean`` and ``components``
    arrays) are in an ``.npz`` in the artifact storage whose sha256 is recorded here.
    """

    class Kind(models.TextChoices):
        COLUMNS = "columns"
        COMPONENTS = "components"

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE,
                                   related_name="drift_reference")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    rows = models.PositiveIntegerField()  # samples in the reference
    features = models.JSONField(default=list)
    basis_path = models.CharField(max_length=500, blank=True, default="")
    basis_sha256 = models.CharField(max_length=64, blank=True, default="")
    note = models.TextField(blank=True, default="")  # how the reference was drawn
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"drift reference of {self.version_id} ({self.kind}, {self.rows} rows)"


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


class Alert(models.Model):
    """Something the retrain cycle ran into and healed (or gave up on), shown on the
    project page until a later cycle completes. One open alert per (version, kind): a
    repeat updates it and counts."""

    class Kind(models.TextChoices):
        WORKER_LOST = "worker_lost", "worker lost while training"
        SCORING_LOST = "scoring_lost", "worker lost while rescoring the pool"
        BROKER_UNREACHABLE = "broker_unreachable", "broker unreachable"
        NOT_TAKEN = "not_taken", "no worker took the task"
        GAVE_UP = "gave_up", "given up"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="alerts")
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    kind = models.CharField(max_length=30, choices=Kind.choices)
    message = models.TextField()
    count = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at", "-pk"]
        indexes = [models.Index(fields=["project", "resolved_at"], name="alert_project_open")]

    def __str__(self) -> str:
        return f"{self.project_id} {self.kind}: {self.message}"


class LabelSuspicionRun(models.Model):
    """The latest search of a project's labels for probable errors (one row per project):
    which version asked for it, what it judged, and how long it took."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    computed_at = models.DateTimeField()
    labels_judged = models.PositiveIntegerField(default=0)  # by the model (pool labels)
    folds = models.PositiveSmallIntegerField(default=0)
    flagged_by_model = models.PositiveIntegerField(default=0)
    disagreements = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    note = models.TextField(blank=True, default="")  # why the model judged nothing, if so

    def __str__(self) -> str:
        return f"{self.project_id} suspicion run of v{getattr(self.version, 'number', '?')}"


class LabelSuspicion(models.Model):
    """A current label that is probably wrong: out-of-sample class probabilities and
    confident learning (``model``), or annotators who disagree on the sample
    (``disagreement``). Replaced per project by each run, in one transaction.

    ``label`` is the current label judged; once it is superseded (corrected, undone or
    changed) the row no longer counts (``learning.selectors.label_suspicion_list``), so a
    correction takes the sample off the list at once.
    """

    class Reason(models.TextChoices):
        MODEL = "model"
        DISAGREEMENT = "disagreement"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sample = models.ForeignKey("annotation.Sample", on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey("annotation.Label", on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=200)  # the label judged
    likely = models.CharField(max_length=200)  # the model's (or the majority's) label
    score = models.FloatField()  # 0..1, higher is more suspicious
    reason = models.CharField(max_length=20, choices=Reason.choices)
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "sample"], name="one_suspicion_per_sample"),
        ]
        indexes = [models.Index(fields=["project", "-score"], name="suspicion_project_score")]

    def __str__(self) -> str:
        return f"{self.project_id} sample {self.sample_id}: {self.value} -> {self.likely}"


class StrategyMix(models.Model):
    """The adaptive default strategy's state for one project (``learning.adaptive.Mix``):
    the shares of its arms and the measured evidence, and the newest label measured."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="+")
    state = models.JSONField(default=dict, blank=True)
    # The newest pool label (by id) that the last measurement saw; labels after it are new.
    measured_through_label_id = models.BigIntegerField(null=True, blank=True)
    measure_seconds = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project_id} mix {self.state.get('shares')}"


class StrategyPick(models.Model):
    """Which arm of the adaptive default put a sample at the head of the queue.

    Written by the ranking with its picks; the newest ranking that picked a sample owns
    it. When the sample's label arrives, the mix credits that arm. A sample labeled
    without a pick (below the ranked head, or before any model) counts for no arm.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sample = models.OneToOneField("annotation.Sample", on_delete=models.CASCADE, related_name="+")
    arm = models.CharField(max_length=20)
    ranked_by = models.PositiveIntegerField()  # the version number whose ranking picked it
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["project", "arm"], name="strategy_pick_project_arm")]

    def __str__(self) -> str:
        return f"{self.sample_id} by {self.arm} (v{self.ranked_by})"
