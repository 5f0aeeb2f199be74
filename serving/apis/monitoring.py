"""The monitoring API: a project's predict traffic, errors, latency, confidence, classes and
accuracy over a window, read from the per-minute rollups."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_docs import THROTTLED, error_examples, error_responses
from core.serializers import StrictSerializer
from core.throttling import TokenScopedRateThrottle
from annotation.authentication import ProjectTokenAuthentication
from serving import model_cache
from serving.monitoring_selectors import WINDOWS, monitoring_summary
from serving.permissions import CanMonitorProject


class _Counts(serializers.Serializer):
    t = serializers.DateTimeField(help_text="Start of the bucket (UTC).")
    requests = serializers.IntegerField()
    rows = serializers.IntegerField()
    errors = serializers.IntegerField()


@extend_schema_serializer(component_name="DriftFeature")
class _DriftFeature(serializers.Serializer):
    name = serializers.CharField(help_text="A column; for text and images PC1…PC10 (principal "
                                           "components of the featurized inputs) and confidence.")
    method = serializers.CharField(help_text=(
        "'K-S p-value' or 'chi-square p-value' (drift when score < threshold) when the "
        "reference or the window has ≤ 1,000 values, else 'Wasserstein distance (normed)' "
        "or 'Jensen-Shannon distance' (drift when score ≥ threshold); the categorical ones "
        "for categorical features and numeric ones with ≤ 5 distinct values."))
    score = serializers.FloatField(help_text="The p-value or distance (4 significant digits).")
    threshold = serializers.FloatField(help_text="0.05 for p-values, 0.1 for distances.")
    drifted = serializers.BooleanField()


@extend_schema_serializer(component_name="Monitoring")
class MonitoringSerializer(serializers.Serializer):
    class Traffic(serializers.Serializer):
        requests = serializers.IntegerField(help_text="Predict requests, refused ones included.")
        rows = serializers.IntegerField(help_text="Predictions served.")
        series = _Counts(many=True, help_text="Per bucket of step_seconds; empty buckets left out.")
        step_seconds = serializers.IntegerField()

    class Errors(serializers.Serializer):
        by_status = serializers.DictField(
            child=serializers.IntegerField(),
            help_text="Requests per status class: 401, 403, 429, 4xx (other), 5xx.")
        total = serializers.IntegerField()
        rate = serializers.FloatField(allow_null=True, help_text="total / requests.")

    class Latency(serializers.Serializer):
        p50 = serializers.FloatField(allow_null=True)
        p95 = serializers.FloatField(allow_null=True)
        p99 = serializers.FloatField(allow_null=True)

    class Confidence(serializers.Serializer):
        mean = serializers.FloatField(allow_null=True)
        histogram = serializers.ListField(child=serializers.IntegerField(),
                                          help_text="Predictions per tenth of confidence, 0..1.")
        low_threshold = serializers.FloatField()
        low_share = serializers.FloatField(allow_null=True,
                                           help_text="Share of predictions below low_threshold.")

    class Classes(serializers.Serializer):
        predicted = serializers.DictField(child=serializers.IntegerField())
        training = serializers.DictField(
            child=serializers.IntegerField(), allow_null=True,
            help_text="Labels per class of the training set of training_version.")
        training_version = serializers.IntegerField(allow_null=True)

    class Accuracy(serializers.Serializer):
        n = serializers.IntegerField()
        correct = serializers.IntegerField()
        accuracy = serializers.FloatField(allow_null=True)
        low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval.")
        high = serializers.FloatField(allow_null=True)

    class LiveAccuracy(Accuracy):
        n = serializers.IntegerField(help_text=(
            "Predictions with client feedback in the window, and those a rule drew at random "
            "and annotators labeled (labels of the inputs routed as the most informative are "
            "counted in routed_accuracy instead)."))
        sampled = serializers.IntegerField(help_text=(
            "Of n: the predictions a rule drew at random (Rule.random_share)."))

    class RoutedAccuracy(Accuracy):
        n = serializers.IntegerField(help_text=(
            "Predictions routed to annotators by a rule whose label came in the window."))
        note = serializers.CharField()

    class EstimatedAccuracy(serializers.Serializer):
        value = serializers.FloatField(allow_null=True)
        method = serializers.CharField()
        note = serializers.CharField()

    class Drift(serializers.Serializer):
        drifted = serializers.BooleanField(help_text="Dataset drift: share ≥ 0.5.")
        share = serializers.FloatField(help_text="Share of the features that drifted.")
        n = serializers.IntegerField(help_text=(
            "Window inputs compared: the newest kept ones, at most 5,000 (tables), 2,000 "
            "(images), 1,000 (text)."))
        reference_n = serializers.IntegerField(help_text="Rows in the version's reference.")
        method = serializers.CharField()
        features = _DriftFeature(many=True)

    window = serializers.ChoiceField(choices=list(WINDOWS))
    # "from" is a keyword: declared below.
    to = serializers.DateTimeField()
    version = serializers.IntegerField(allow_null=True)
    served_version = serializers.IntegerField(allow_null=True)
    traffic = Traffic()
    errors = Errors()
    latency_ms = Latency(help_text="Estimated from log-spaced latency buckets.")
    confidence = Confidence()
    classes = Classes()
    live_accuracy = LiveAccuracy(help_text=(
        "From client feedback, an unbiased sample when clients send feedback independently "
        "of the prediction, and from the inputs rules drew uniformly at random."))
    routed_accuracy = RoutedAccuracy(help_text=(
        "The served model's accuracy on the inputs rules routed to annotators, once labeled: "
        "the least certain inputs, so biased low; never part of live_accuracy."))
    estimated_accuracy = EstimatedAccuracy(
        help_text="Mean top-class confidence: equals accuracy only for a calibrated model.")
    drift = Drift(allow_null=True, help_text=(
        "Input drift of the version's (given, else served) inputs kept in the window against "
        "a random sample of the project's samples taken when it was trained: per column "
        "for tabular data, per principal component of the featurized inputs plus the "
        "confidence for text and images. Null when not computed: see drift_note."))
    drift_note = serializers.CharField(allow_null=True, help_text=(
        "Why drift is null: no reference, not enough data (fewer than 30 kept inputs), no "
        "model."))


MonitoringSerializer._declared_fields["from"] = serializers.DateTimeField()

_EXAMPLE = {
    "window": "1h", "from": "2026-12-01T15:00:00Z", "to": "2026-12-01T16:00:00Z",
    "version": None, "served_version": 3,
    "traffic": {"requests": 3, "rows": 5, "step_seconds": 60,
                "series": [{"t": "2026-12-01T15:42:00Z", "requests": 3, "rows": 5, "errors": 1}]},
    "errors": {"by_status": {"401": 1, "403": 0, "429": 0, "4xx": 0, "5xx": 0},
               "total": 1, "rate": 0.3333},
    "latency_ms": {"p50": 3.2, "p95": 7.6, "p99": 7.9},
    "confidence": {"mean": 0.81, "histogram": [0, 0, 0, 0, 0, 1, 0, 1, 1, 2],
                   "low_threshold": 0.5, "low_share": 0.0},
    "classes": {"predicted": {"cat": 3, "dog": 2}, "training": {"cat": 40, "dog": 60},
                "training_version": 3},
    "live_accuracy": {"n": 2, "correct": 2, "accuracy": 1.0, "low": 0.3424, "high": 1.0,
                      "sampled": 0},
    "routed_accuracy": {"n": 0, "correct": 0, "accuracy": None, "low": None, "high": None,
                        "note": "labels of production inputs routed to annotators by a rule: …"},
    "estimated_accuracy": {"value": 0.81, "method": "mean max-probability (CBPE)",
                           "note": "an estimate, not a measurement: …"},
    "drift": {"drifted": True, "share": 0.6667, "n": 812, "reference_n": 5000,
              "method": "per principal component of the pixels, and confidence, tests by "
                        "reference size as Evidently's defaults; dataset drift when ≥ 50% of "
                        "features drift",
              "features": [
                  {"name": "PC1", "method": "Wasserstein distance (normed)", "score": 0.4812,
                   "threshold": 0.1, "drifted": True},
                  {"name": "PC2", "method": "Wasserstein distance (normed)", "score": 0.0213,
                   "threshold": 0.1, "drifted": False},
                  {"name": "confidence", "method": "K-S p-value", "score": 1.2e-05,
                   "threshold": 0.05, "drifted": True}]},
    "drift_note": None,
}


class MonitoringApi(APIView):
    """Monitoring numbers of the project's predict API over a window.

    Read from per-minute rollups kept by the prediction-log writer (raw logs are pruned
    after ``PREDICTION_LOG_RETENTION_DAYS``; rollups stay). With ``version``, only requests
    served by that model version count (refused requests carry none). Owners and scientists
    (session or personal token) or a token with the ``monitor`` scope may read.
    """

    authentication_classes = [ProjectTokenAuthentication, SessionAuthentication]
    permission_classes = [CanMonitorProject]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"

    class QuerySerializer(StrictSerializer):
        window = serializers.ChoiceField(choices=list(WINDOWS), default="24h")
        version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1,
                                           help_text="Only this model version's requests.")

    @extend_schema(
        operation_id="monitoring",
        parameters=[QuerySerializer],
        responses={200: MonitoringSerializer, **error_responses(400, 401, 403, 404, 429)},
        examples=[
            OpenApiExample("An hour", response_only=True, status_codes=["200"], value=_EXAMPLE),
            *error_examples({
                "400": ("Bad window", "invalid", "window: \"2h\" is not a valid choice.", None),
                "401": ("No token", "not_authenticated",
                        "Authentication credentials were not provided.", None),
                "403": ("Missing scope", "permission_denied",
                        "this token lacks the 'monitor' scope", None),
                "404": ("Unknown version", "unknown_version", "this project has no model version 9",
                        {"version": 9}),
                "429": THROTTLED,
            }),
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        query = self.QuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        version = query.validated_data.get("version")
        if version is not None and not self.project.model_versions.filter(number=version).exists():
            raise model_cache.UnknownVersion(f"this project has no model version {version}",
                                             detail={"version": version})
        return Response(monitoring_summary(project=self.project,
                                           window=query.validated_data["window"], version=version))
