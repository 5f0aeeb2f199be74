"""The DRF API: one view per operation, thin: validate, call a service, render."""
from __future__ import annotations

import time

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Project
from serving.authentication import ProjectTokenAuthentication
from serving.models import ApiToken, PredictionLog
from serving.permissions import TokenHasProjectScope
from serving.prediction_log import prediction_log_record
from serving.services import predict


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.JSONField(allow_null=True)


class PredictApi(APIView):
    """Predict labels for a batch of instances with the project's served model."""

    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [TokenHasProjectScope]
    required_scope = ApiToken.Scope.PREDICT

    class InputSerializer(serializers.Serializer):
        instances = serializers.ListField(
            child=serializers.DictField(), allow_empty=False,
            help_text="One object per instance; image projects send {'image_base64': '...'}.",
        )

        def validate_instances(self, value: list) -> list:
            limit = settings.PREDICT_MAX_INSTANCES
            if len(value) > limit:
                raise ValidationError(f"at most {limit} instances per request, got {len(value)}")
            return value

    class OutputSerializer(serializers.Serializer):
        class PredictionSerializer(serializers.Serializer):
            label = serializers.CharField()
            confidence = serializers.FloatField()
            probabilities = serializers.DictField(child=serializers.FloatField())

        model_version = serializers.IntegerField()
        predictions = PredictionSerializer(many=True)

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, 400: ErrorSerializer, 401: ErrorSerializer,
                   403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
        examples=[
            OpenApiExample("One image", request_only=True,
                           value={"instances": [{"image_base64": "iVBORw0KGgo..."}]}),
            OpenApiExample("Prediction", response_only=True, value={
                "model_version": 3,
                "predictions": [{"label": "7", "confidence": 0.91,
                                 "probabilities": {"0": 0.01, "7": 0.91}}]}),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        self._started = time.perf_counter()
        project = get_object_or_404(Project, slug=slug)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        batch = predict(project=project, instances=serializer.validated_data["instances"])
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
                PredictionLog(model_version_id=batch.model_version_id,
                              outcome=PredictionLog.Outcome.OK, predicted_label=p.label,
                              confidence=p.confidence, **common)
                for p in batch.predictions
            ]
        else:
            outcome = (PredictionLog.Outcome.CLIENT_ERROR if status_code < 500
                       else PredictionLog.Outcome.SERVER_ERROR)
            rows = [PredictionLog(outcome=outcome, **common)]
        prediction_log_record(rows)
