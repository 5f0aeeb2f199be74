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
    # Where the true label came from. A client's feedback is the live accuracy; the label an
    # annotator gave a routed input is not (rules route the inputs the model is least sure
    # of, so their accuracy is biased low) and is reported apart, as routed accuracy, unless
    # the input was drawn at random (``sampled``): a uniform draw is an unbiased sample of the
    # traffic like client feedback, so its label counts as live accuracy (``sampled``).
    class FeedbackSource(models.TextChoices):
        CLIENT = "client"
        ROUTED = "routed"
        SAMPLED = "sampled"

    feedback_source = models.CharField(max_length=10, blank=True, default="", db_default="",
                                       choices=FeedbackSource.choices)
    # Drawn at random by a rule's route (``Rule.random_share``) for live accuracy.
    sampled = models.BooleanField(default=False, db_default=False)
    # Set when the writer had to change the row to store it (a text the database refuses,
    # an instance dropped, a deleted token or version): what it changed and why.
    note = models.TextField(blank=True, default="")

    class Meta:
        # Live accuracy reads rows with feedback through "predictionlog_feedback_cover",
        # made by migration 0008 in SQL: on PostgreSQL it carries the labels and version
        # (INCLUDE), so a month of feedback is counted from the index alone.
        indexes = [
            models.Index(fields=["project", "created_at"], name="predictionlog_by_time"),
        ]

    @property
    def is_correct(self) -> bool | None:
        """Whether the prediction matched the true label; None before feedback."""
        return None if self.feedback_at is None else self.true_label == self.predicted_label


# Rollups: per (project, model version number, minute), written by the prediction-log writer
# in the same flush as the raw rows (serving/rollups.py), so the monitoring reads never scan
# raw logs over a window and outlive the raw rows' retention. The same counts are kept per
# hour too, so a long window reads a few hundred rows instead of tens of thousands.
LATENCY_BOUNDS_MS = tuple(2.0**k for k in range(17))  # 1 ms … 65.5 s; one more bucket above
LATENCY_COLUMNS = tuple(f"latency_{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
CONFIDENCE_COLUMNS = tuple(f"confidence_{i}" for i in range(10))  # [0, 0.1) … [0.9, 1.0]
ERROR_COLUMNS = ("errors_401", "errors_403", "errors_429", "errors_4xx", "errors_5xx")


class _RollupCounts(models.Model):
    """Counts of one project's predict requests under one model version in a span of time.

    ``version`` is the model version's number, 0 for requests without one (refused or
    failed). ``requests`` counts requests, ``rows`` predictions; the ``errors_*`` columns
    count requests by status class (401, 403, 429 and the other 4xx apart); ``latency_NN``
    count requests per log-spaced latency bucket (upper bounds ``LATENCY_BOUNDS_MS``, the
    last one unbounded); ``confidence_N`` count predictions per tenth of confidence.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    requests = models.BigIntegerField(default=0)
    rows = models.BigIntegerField(default=0)
    confidence_sum = models.FloatField(default=0.0)

    class Meta:
        abstract = True


for _name in (*ERROR_COLUMNS, *LATENCY_COLUMNS, *CONFIDENCE_COLUMNS):
    _RollupCounts.add_to_class(_name, models.BigIntegerField(default=0))


class PredictionRollup(_RollupCounts):
    """The counts of one UTC minute."""

    minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version", "minute"],
                                               name="predictionrollup_key")]
        indexes = [models.Index(fields=["project", "minute"], name="predictionrollup_by_time")]


class PredictionHourRollup(_RollupCounts):
    """The counts of one UTC hour (``hour``: its first minute), the sum of its minutes."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version", "hour"],
                                               name="predictionhourrollup_key")]
        indexes = [models.Index(fields=["project", "hour"], name="predictionhourrollup_by_time")]


class _ClassCounts(models.Model):
    """How often each label was predicted under one model version in a span of time."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    label = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class PredictionClassRollup(_ClassCounts):
    minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version", "minute", "label"],
                                               name="predictionclassrollup_key")]
        indexes = [models.Index(fields=["project", "minute"], name="predictionclassrollup_by_time")]


class PredictionClassHourRollup(_ClassCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version", "hour", "label"],
                                               name="predictionclasshourrollup_key")]
        indexes = [models.Index(fields=["project", "hour"], name="predictionclasshour_by_time")]


class Rule(models.Model):
    """A KPI rule of a project: when ``metric`` over ``window`` compares (``op``) with
    ``threshold`` on at least ``min_count`` observations, and the last firing is
    ``cooldown_minutes`` old, it fires its ``actions`` (serving/rules/). A rule that cannot
    be evaluated records why in ``broken_reason`` and is disabled until it is edited."""

    class Metric(models.TextChoices):
        LIVE_ACCURACY = "live_accuracy", "live accuracy (feedback)"
        ESTIMATED_ACCURACY = "estimated_accuracy", "estimated accuracy"
        DRIFT = "drift", "drift (share of drifted features, or a column's score)"
        LOW_CONFIDENCE_SHARE = "low_confidence_share", "share of low-confidence predictions"
        ERROR_RATE = "error_rate", "error rate"
        LABELS_SINCE_MODEL = "labels_since_model", "labels since the served model"
        MODEL_AGE_HOURS = "model_age_hours", "age of the served model (hours)"

    class Op(models.TextChoices):
        LT = "<"
        LE = "<="
        GT = ">"
        GE = ">="

    class Action(models.TextChoices):
        RETRAIN = "retrain"
        ROUTE = "route"
        ALERT = "alert"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200, blank=True, default="")
    metric = models.CharField(max_length=30, choices=Metric.choices)
    column = models.CharField(max_length=200, blank=True, default="",
                              help_text="drift only: this column's score instead of the share")
    op = models.CharField(max_length=2, choices=Op.choices)
    threshold = models.FloatField()
    window = models.CharField(max_length=5, default="1h")
    min_count = models.PositiveIntegerField(default=0)
    cooldown_minutes = models.PositiveIntegerField(default=60)
    actions = models.JSONField(default=list)
    route_count = models.PositiveIntegerField(default=20)
    # The share of route_count drawn at random from the served version's predictions, held
    # out as test samples: an unbiased sample of production, so the promotion check sees
    # the data a retrain now serves, and their labels count as live accuracy.
    RANDOM_SHARE_DEFAULT = 0.2
    random_share = models.FloatField(default=RANDOM_SHARE_DEFAULT)
    enabled = models.BooleanField(default=True)
    broken_reason = models.TextField(blank=True, default="")
    # The last evaluation: when, what it read, what it decided (see rules/evaluation.py).
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_count = models.BigIntegerField(null=True, blank=True)
    last_status = models.CharField(max_length=200, blank=True, default="")
    last_fired_at = models.DateTimeField(null=True, blank=True)
    # Since when the metric has had no data (None: it had data at the last evaluation).
    no_data_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["enabled"], name="rule_enabled")]

    def __str__(self) -> str:
        column = f"[{self.column}]" if self.column else ""
        return f"{self.metric}{column} {self.op} {self.threshold:g} over {self.window}"


class RuleFiring(models.Model):
    """One firing of a rule: the values that caused it, what it did, what resulted."""

    class Retrain(models.TextChoices):
        NONE = "", "not asked"
        WAITING = "waiting", "waiting for the routed samples' labels"
        REQUESTED = "requested", "requested"
        FAILED = "failed", "could not be requested"

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="firings")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    fired_at = models.DateTimeField()
    # The rule as it was, and what it read.
    condition = models.CharField(max_length=300)
    value = models.FloatField()
    count = models.BigIntegerField()
    actions = models.JSONField(default=list)
    sample_ids = models.JSONField(default=list)
    notes = models.JSONField(default=list)  # what each action did or why it could not
    retrain = models.CharField(max_length=10, choices=Retrain.choices, blank=True, default="")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    alerted = models.BooleanField(default=False)
    alert_resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at", "-pk"]
        indexes = [
            models.Index(fields=["rule", "-fired_at"], name="rulefiring_by_rule"),
            models.Index(fields=["project", "-fired_at"], name="rulefiring_by_project"),
        ]
