"""Model version APIs: list, detail with metrics and provenance, promote (roll back or
forward), export (MLflow or ONNX)."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from serving import model_cache
from core.api_docs import THROTTLED, TOO_LARGE, error_examples, error_responses
from annotation.authentication import ProjectTokenAuthentication
from annotation.permissions import PROJECT_NOT_FOUND_EXAMPLE, CanManageProjectData
from annotation.models import ApiToken
from serving.permissions import TokenHasProjectScope
from core.request_limits import BodySizeLimitMixin
from serving.selectors import model_version_get, model_version_list
from core.serializers import StrictSerializer
from serving.services import served_version_set
from core.throttling import TokenScopedRateThrottle
from learning.services import EXPORT_FORMATS, model_version_export

# Client tokens of any scope read versions; personal (labeling) tokens reach only labeling.
CLIENT_SCOPES = (ApiToken.Scope.PREDICT, ApiToken.Scope.FEEDBACK, ApiToken.Scope.ADMIN)

_ERRORS = {
    "401": ("No token", "not_authenticated", "Authentication credentials were not provided.", None),
    "403": ("Personal token", "permission_denied",
            "this token lacks the 'predict' or 'feedback' or 'admin' scope", None),
    "404": ("Unknown version", "unknown_version", "this project has no model version 9",
            {"version": 9}),
    "429": THROTTLED,
}


def _version_or_404(project, number: int):
    version = model_version_get(project=project, number=number)
    if version is None:
        raise model_cache.UnknownVersion(
            f"this project has no model version {number}", detail={"version": number}
        )
    return version


class ModelVersionListApi(APIView):
    """List the project's model versions, newest first. Any scope of the project may read."""

    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [TokenHasProjectScope]
    throttle_classes = [TokenScopedRateThrottle]
    required_scopes = CLIENT_SCOPES
    throttle_scope = "read"

    @extend_schema_serializer(component_name="ModelVersionSummary")
    class OutputSerializer(serializers.Serializer):
        number = serializers.IntegerField()
        status = serializers.ChoiceField(choices=["queued", "training", "ready", "failed"])
        accuracy = serializers.FloatField(allow_null=True)
        macro_f1 = serializers.FloatField(allow_null=True)
        trained_on_label_count = serializers.IntegerField(allow_null=True)
        is_served = serializers.BooleanField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="model_versions_list",
        responses={200: OutputSerializer(many=True), **error_responses(401, 403, 404, 429)},
        examples=[
            OpenApiExample("Two versions", response_only=True, status_codes=["200"], value=[
                {"number": 2, "status": "ready", "accuracy": 0.93, "macro_f1": 0.92,
                 "trained_on_label_count": 200, "is_served": True,
                 "created_at": "2026-11-21T20:06:00Z"},
                {"number": 1, "status": "ready", "accuracy": 0.81, "macro_f1": 0.8,
                 "trained_on_label_count": 100, "is_served": False,
                 "created_at": "2026-11-21T19:40:00Z"},
            ]),
            *error_examples({**_ERRORS, "404": PROJECT_NOT_FOUND_EXAMPLE}),
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        versions = model_version_list(project=request.auth.project)
        return Response(self.OutputSerializer(versions, many=True).data)


class ModelVersionDetailApi(APIView):
    """Show one version: metrics, labels trained on, timings, artifact hash, errors."""

    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [TokenHasProjectScope]
    throttle_classes = [TokenScopedRateThrottle]
    required_scopes = CLIENT_SCOPES
    throttle_scope = "read"

    @extend_schema_serializer(component_name="ModelVersionDetail")
    class OutputSerializer(serializers.Serializer):
        class MetricsSerializer(serializers.Serializer):
            class PerClassSerializer(serializers.Serializer):
                precision = serializers.FloatField()
                recall = serializers.FloatField()
                f1 = serializers.FloatField()
                support = serializers.IntegerField()

            accuracy = serializers.FloatField(allow_null=True)
            macro_f1 = serializers.FloatField(allow_null=True)
            labels = serializers.ListField(
                child=serializers.CharField(), source="metrics.labels", allow_null=True,
                help_text="Row and column order of the confusion matrix.")
            per_class = serializers.DictField(
                child=PerClassSerializer(), source="metrics.per_class", allow_null=True)
            confusion_matrix = serializers.ListField(
                child=serializers.ListField(child=serializers.IntegerField()),
                source="metrics.confusion_matrix", allow_null=True,
                help_text="Rows: true label; columns: predicted label.")
            test_label_count = serializers.IntegerField(allow_null=True)

        class LabelsSerializer(serializers.Serializer):
            count = serializers.IntegerField(source="trained_on_label_count", allow_null=True)
            last_label_id = serializers.IntegerField(allow_null=True)
            snapshot_sha256 = serializers.CharField(source="label_snapshot_sha256")

        class TimingsSerializer(serializers.Serializer):
            created_at = serializers.DateTimeField()
            started_at = serializers.DateTimeField(allow_null=True)
            finished_at = serializers.DateTimeField(allow_null=True)
            fit_seconds = serializers.FloatField(allow_null=True)
            score_seconds = serializers.FloatField(allow_null=True)
            scored_sample_count = serializers.IntegerField(allow_null=True)

        number = serializers.IntegerField()
        status = serializers.ChoiceField(choices=["queued", "training", "ready", "failed"])
        trigger = serializers.CharField()
        estimator = serializers.CharField()
        query_strategy = serializers.CharField()
        is_served = serializers.BooleanField()
        metrics = MetricsSerializer(source="*")
        labels_trained_on = LabelsSerializer(source="*")
        timings = TimingsSerializer(source="*")
        artifact_sha256 = serializers.CharField()
        sklearn_version = serializers.CharField()
        error = serializers.CharField()
        promotion_note = serializers.CharField()

    @extend_schema(
        operation_id="model_versions_retrieve",
        responses={200: OutputSerializer, **error_responses(401, 403, 404, 429)},
        examples=[
            OpenApiExample("A ready version", response_only=True, status_codes=["200"], value={
                "number": 2, "status": "ready", "trigger": "batch",
                "estimator": "logreg", "query_strategy": "least_confident",
                "is_served": True,
                "metrics": {"accuracy": 0.9, "macro_f1": 0.89, "labels": ["cat", "dog"],
                            "per_class": {
                                "cat": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 10},
                                "dog": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 10}},
                            "confusion_matrix": [[9, 1], [1, 9]], "test_label_count": 20},
                "labels_trained_on": {"count": 200, "last_label_id": 4711,
                                      "snapshot_sha256": "9f86d081884c7d65..."},
                "timings": {"created_at": "2026-11-21T20:06:00Z",
                            "started_at": "2026-11-21T20:06:01Z",
                            "finished_at": "2026-11-21T20:06:04Z", "fit_seconds": 2.1,
                            "score_seconds": 0.8, "scored_sample_count": 5000},
                "artifact_sha256": "2c26b46b68ffc68f...", "sklearn_version": "1.9.1",
                "error": "", "promotion_note": "macro-F1 0.890 vs served v1 0.800 on the same 48 "
                "test labels; margin difference on them +0.072 per label (z +2.31): not worse"}),
            *error_examples(_ERRORS),
        ],
    )
    def get(self, request: Request, slug: str, number: int) -> Response:
        version = _version_or_404(request.auth.project, number)
        return Response(self.OutputSerializer(version).data)


class ModelVersionPromoteApi(BodySizeLimitMixin, APIView):
    """Serve a ready version instead of the current one: roll back or forward (``admin``)."""

    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [TokenHasProjectScope]
    throttle_classes = [TokenScopedRateThrottle]
    required_scopes = (ApiToken.Scope.ADMIN,)
    throttle_scope = "admin"

    @extend_schema_serializer(component_name="PromoteInput")
    class InputSerializer(StrictSerializer):
        note = serializers.CharField(required=False, allow_blank=True, max_length=1000,
                                     help_text="Why; stored as the version's promotion note.")

    @extend_schema_serializer(component_name="PromoteOutput")
    class OutputSerializer(serializers.Serializer):
        number = serializers.IntegerField(source="version.number")
        is_served = serializers.BooleanField(source="version.is_served")
        promotion_note = serializers.CharField(source="version.promotion_note")
        previous_version = serializers.IntegerField(
            allow_null=True, help_text="The version served before, if any.")

    @extend_schema(
        operation_id="model_versions_promote",
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 409, 413, 429)},
        examples=[
            OpenApiExample("Roll back", request_only=True,
                           value={"note": "v3 misreads sevens; back to v2"}),
            OpenApiExample("Promoted", response_only=True, status_codes=["200"], value={
                "number": 2, "is_served": True, "promotion_note": "v3 misreads sevens; back to v2",
                "previous_version": 3}),
            *error_examples({
                "400": ("Unknown field", "invalid", "unknown field(s) 'force'; expected ['note']",
                        {"non_field_errors": ["unknown field(s) 'force'; expected ['note']"]}),
                **_ERRORS,
                "403": ("Missing scope", "permission_denied", "this token lacks the 'admin' scope",
                        None),
                "409": ("Not ready", "version_not_ready", "model version 4 is training, not ready",
                        {"version": 4, "status": "training"}),
                "413": TOO_LARGE,
            }),
        ],
    )
    def post(self, request: Request, slug: str, number: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        promotion = served_version_set(project=request.auth.project, number=number,
                                       **serializer.validated_data)
        return Response(self.OutputSerializer(promotion).data, status=status.HTTP_200_OK)


class ModelVersionExportApi(APIView):
    """Download a ready version as an MLflow model (zip) or an ONNX file.

    For an ``admin``-scoped token of the project, or an owner or scientist (session or
    personal token). ``mlflow``: a zipped MLflow model directory whose pyfunc ``predict``
    takes a DataFrame of raw inputs (``text``; the table's columns; ``image`` bytes) and
    answers the labels and probabilities of this API's predict. ``onnx``: the featurizer
    and classifier as one ONNX graph, where skl2onnx converts them (not text projects).
    """

    authentication_classes = [ProjectTokenAuthentication, SessionAuthentication]
    permission_classes = [CanManageProjectData]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "export"

    class QuerySerializer(StrictSerializer):
        format = serializers.ChoiceField(
            choices=list(EXPORT_FORMATS), help_text="mlflow: a zipped MLflow model directory; "
            "onnx: one .onnx file.")

    def perform_content_negotiation(self, request, force=False):
        # The body is a file whatever the Accept header says; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="model_versions_export",
        parameters=[QuerySerializer],
        responses={(200, "application/zip"): OpenApiTypes.BINARY,
                   (200, "application/octet-stream"): OpenApiTypes.BINARY,
                   **error_responses(400, 401, 403, 404, 409, 429)},
        examples=[
            OpenApiExample("MLflow model", response_only=True, status_codes=["200"],
                           media_type="application/zip", value="<digits-v3-mlflow.zip>"),
            OpenApiExample("ONNX model", response_only=True, status_codes=["200"],
                           media_type="application/octet-stream", value="<digits-v3.onnx>"),
            *error_examples({
                "400": ("Unknown format", "invalid", '"pmml" is not a valid choice.',
                        {"format": ['"pmml" is not a valid choice.']}),
                **_ERRORS,
                "403": ("Missing scope", "permission_denied", "this token lacks the 'admin' scope",
                        None),
                "409": ("Not exportable", "not_exportable", "cannot export to ONNX: text "
                        "features are TF-IDF over character n-grams within word boundaries "
                        "(analyzer='char_wb'), which skl2onnx 1.20 cannot convert; use the "
                        "mlflow format", {"reason": "text_featurizer"}),
            }),
        ],
    )
    def get(self, request: Request, slug: str, number: int) -> HttpResponse:
        query = self.QuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        export = model_version_export(project=self.project, number=number,
                                      fmt=query.validated_data["format"])
        response = HttpResponse(export.content, content_type=export.content_type)
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response
