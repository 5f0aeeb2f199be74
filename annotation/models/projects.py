"""Projects, the settings history and members with their roles."""
from __future__ import annotations

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
        BEST = "best", "new unless worse on the test labels"
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
        help_text="Which ready version is served: a new one unless the test labels show it "
                  "worse than the served one, or always the latest.",
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
    # Production inputs routed to labeling by a rule: the share of the next hand-outs they
    # take (their queue scores interleave them with the pool's best at this rate; 1: all
    # first, 0: they compete on their own scores).
    production_share = models.FloatField(default=0.5)
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
            models.CheckConstraint(
                condition=Q(production_share__gte=0) & Q(production_share__lte=1),
                name="production_share_in_unit_interval",
            ),
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
        PRODUCTION_SHARE = "production_share", "production share of the queue"
        FEATURIZER = "featurizer", "featurizer"

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
