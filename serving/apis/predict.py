"""The predict API: JSON (base64 images) or multipart uploads, served or pinned version."""
from __future__ import annotations

import time

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from serving.apis.examples import error_examples, error_responses
from serving.authentication import ProjectTokenAuthentication
from serving.models import ApiToken, PredictionLog
from serving.permissions import TokenHasProjectScope
from serving.prediction_log import prediction_log_record
from serving.request_limits import BodySizeLimitMixin
from serving.serializers import StrictSerializer
from serving.services import predict
from serving.throttling import TokenScopedRateThrottle


# An 8x8 white PNG: the example request works as is.
EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAAEElEQVR42mP8zwABTAwUMQBJQQEPkWFcdwAAAABJRU5ErkJggg=="
)


def _check_batch_size(count: int) -> None:
    limit = settings.PREDICT_MAX_INSTANCES
    if count > limit:
        raise ValidationError(f"at most {limit} instances per request, got {count}")


class PredictApi(BodySizeLimitMixin, APIView):
    """Predict labels for a batch of instances with the project's served (or a pinned) model.

    Each prediction carries an ``id``; it is stored on its ``PredictionLog`` row so the
    feedback API can refer to it (see ``serving.selectors.prediction_log_get``).
    """

    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [TokenHasProjectScope]
    throttle_classes = [TokenScopedRateThrottle]
    parser_classes = [JSONParser, MultiPartParser]
    required_scopes = (ApiToken.Scope.PREDICT,)
    throttle_scope = "predict"

    class QuerySerializer(StrictSerializer):
        version = serializers.IntegerField(
            required=False, min_value=1, max_value=2**31 - 1,
            help_text="Predict with this model version (must be ready) instead of the served one.",
        )

    @extend_schema_serializer(component_name="PredictInput")
    class InputSerializer(StrictSerializer):
        instances = serializers.ListField(
            child=serializers.DictField(), allow_empty=False,
            help_text="One object per instance; image projects send {'image_base64': '...'}.",
        )

        def validate_instances(self, value: list) -> list:
            _check_batch_size(len(value))
            return value

    @extend_schema_serializer(component_name="PredictMultipartInput")
    class MultipartInputSerializer(StrictSerializer):
        image = serializers.ListField(
            child=serializers.FileField(), allow_empty=False,
            help_text="One image file per instance; repeat the field for a batch.",
        )

        def validate_image(self, value: list) -> list:
            _check_batch_size(len(value))
            return value

    @extend_schema_serializer(component_name="PredictOutput")
    class OutputSerializer(serializers.Serializer):
        class PredictionSerializer(serializers.Serializer):
            id = serializers.UUIDField(help_text="Quote it when sending feedback.")
            label = serializers.CharField()
            confidence = serializers.FloatField()
            probabilities = serializers.DictField(child=serializers.FloatField())

        model_version = serializers.IntegerField()
        predictions = PredictionSerializer(many=True)

    @extend_schema(
        operation_id="predict",
        parameters=[QuerySerializer],
        request={"application/json": InputSerializer,
                 "multipart/form-data": MultipartInputSerializer},
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 409, 413, 429)},
        examples=[
            OpenApiExample("One image", request_only=True, media_type="application/json",
                           value={"instances": [{"image_base64": EXAMPLE_PNG_BASE64}]}),
            OpenApiExample("Two uploads", request_only=True, media_type="multipart/form-data",
                           value={"image": ["<a.png>", "<b.png>"]}),
            OpenApiExample("Prediction", response_only=True, status_codes=["200"], value={
                "model_version": 3,
                "predictions": [{"id": "0b7f9f1e-3c3e-4a59-9a51-3d2f4f8f6a10", "label": "7",
                                 "confidence": 0.91, "probabilities": {"0": 0.01, "7": 0.91}}]}),
            *error_examples({
                "400": ("Bad instance", "instances[0]: image_base64 is not valid base64",
                        {"index": 0}),
                "401": ("No token", "Authentication credentials were not provided.", None),
                "403": ("Wrong project", "this token belongs to another project", None),
                "404": ("Unknown version", "this project has no model version 9", {"version": 9}),
                "409": ("No model", "this project has no served model yet; label a batch first",
                        None),
                "413": ("Too large", "request body of 31457280 bytes is over the limit of "
                        "10485760 bytes", {"content_length": 31457280, "max_body_bytes": 10485760}),
                "429": ("Throttled", "too many requests for this token; retry in 3 s",
                        {"retry_after": 3}),
            }),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        self._started = time.perf_counter()
        project = request.auth.project  # TokenHasProjectScope checked it is the URL's project
        query = self.QuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        if request.content_type.startswith("multipart/"):
            serializer = self.MultipartInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            instances = [{"image": f} for f in serializer.validated_data["image"]]
        else:
            serializer = self.InputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            instances = serializer.validated_data["instances"]
        batch = predict(project=project, instances=instances,
                        version=query.validated_data.get("version"))
        self._batch = batch
        return Response(self.OutputSerializer(batch).data)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        token = request.auth if isinstance(getattr(request, "auth", None), ApiToken) else None
        if token is not None and token.project.slug == kwargs.get("slug"):
            self._log(token, response.status_code)
        return response

    def _log(self, token: ApiToken, status_code: int) -> None:
        started = getattr(self, "_started", None)
        latency_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        now = timezone.now()
        batch = getattr(self, "_batch", None)
        common = {"project_id": token.project_id, "token_id": token.pk,
                  "status_code": status_code, "latency_ms": latency_ms, "created_at": now}
        if batch is not None and status_code < 400:
            rows = [
                PredictionLog(model_version_id=batch.model_version_id, prediction_id=p.id,
                              outcome=PredictionLog.Outcome.OK, predicted_label=p.label,
                              confidence=p.confidence, **common)
                for p in batch.predictions
            ]
        else:
            outcome = (PredictionLog.Outcome.CLIENT_ERROR if status_code < 500
                       else PredictionLog.Outcome.SERVER_ERROR)
            rows = [PredictionLog(outcome=outcome, **common)]
        prediction_log_record(rows)
