"""The predict API: JSON (base64 images) or multipart uploads, served or pinned version."""
from __future__ import annotations

import time

import orjson
from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_docs import THROTTLED, TOO_LARGE, error_examples, error_responses
from core.fast_json import (
    FirstRendererNegotiation,
    OrjsonParser,
    OrjsonRenderer,
    ReusedPartsMixin,
)
from core.remembered import RememberedTokenMixin
from annotation.authentication import ProjectTokenAuthentication
from serving.instances import instance_keepable
from annotation.models import ApiToken
from serving.permissions import TokenHasProjectScope
from serving.prediction_log import RequestLog, prediction_log_record, prediction_refused_record
from core.request_limits import BodySizeLimitMixin
from core.serializers import StrictSerializer
from serving.services import PredictionBatch, predict
from core.throttling import TokenScopedRateThrottle


# An 8x8 white PNG: the example request works as is.
EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAAEElEQVR42mP8zwABTAwUMQBJQQEPkWFcdwAAAABJRU5ErkJggg=="
)


def _check_batch_size(count: int) -> None:
    limit = settings.PREDICT_MAX_INSTANCES
    if count > limit:
        raise ValidationError(f"at most {limit} instances per request, got {count}")


def plain_instances(data) -> list | None:
    """Return ``data["instances"]`` when the body is obviously well formed, else None.

    The common body skips the serializers (hundreds of µs for a 100-row batch); anything
    else goes through them, so every error message is the serializers' own.
    """
    if type(data) is not dict or len(data) != 1:
        return None
    instances = data.get("instances")
    if (type(instances) is not list or not instances
            or len(instances) > settings.PREDICT_MAX_INSTANCES
            or not all(type(i) is dict for i in instances)):
        return None
    return instances


class PredictApi(RememberedTokenMixin, ReusedPartsMixin, BodySizeLimitMixin, APIView):
    """Predict labels for a batch of instances with the project's served (or a pinned) model.

    Each prediction carries an ``id``; it is stored on its ``PredictionLog`` row (with the
    instance itself when it is small) so the feedback API can refer to it.

    Kept fast without leaving DRF: orjson in and out, the token check remembered for a
    second per process, an O(1) throttle, serializers only for bodies that need their
    error messages, and the log handed to a writer thread.
    """

    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [TokenHasProjectScope]
    throttle_classes = [TokenScopedRateThrottle]
    parser_classes = [OrjsonParser, MultiPartParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FirstRendererNegotiation
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

    def initial(self, request: Request, *args, **kwargs) -> None:
        self._started = time.perf_counter()  # before the token, scope and throttle checks
        super().initial(request, *args, **kwargs)

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
                "400": ("Bad instance", "invalid_instance",
                        "instances[0]: image_base64 is not valid base64",
                        {"index": 0}),
                "401": ("No token", "not_authenticated",
                        "Authentication credentials were not provided.", None),
                "403": ("Missing scope", "permission_denied",
                        "this token lacks the 'predict' scope", None),
                "404": ("Unknown version", "unknown_version", "this project has no model version 9",
                        {"version": 9}),
                "409": ("No model", "no_model",
                        "this project has no served model yet; label a batch first", None),
                "413": TOO_LARGE,
                "429": THROTTLED,
            }),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        project = request.auth.project  # TokenHasProjectScope checked it is the URL's project
        version = None
        if request.query_params:
            query = self.QuerySerializer(data=request.query_params.dict())
            query.is_valid(raise_exception=True)
            version = query.validated_data.get("version")
        if request.content_type.startswith("multipart/"):
            serializer = self.MultipartInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            instances = [{"image": f} for f in serializer.validated_data["image"]]
        else:
            instances = plain_instances(request.data)
            if instances is None:
                serializer = self.InputSerializer(data=request.data)
                serializer.is_valid(raise_exception=True)
                instances = serializer.validated_data["instances"]
        batch = predict(project=project, instances=instances, version=version)
        self._batch, self._instances = batch, instances
        return Response(predictions_output(batch))

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        token = request.auth if isinstance(getattr(request, "auth", None), ApiToken) else None
        if token is not None and token.project.slug == kwargs.get("slug"):
            self._log(token, response.status_code)
        elif response.status_code >= 400 and kwargs.get("slug"):
            # Refused before the project was known (no or a bad token, another project's
            # token, key guessing): counted in the URL project's rollups, nothing stored.
            prediction_refused_record(slug=kwargs["slug"], status_code=response.status_code,
                                      latency_ms=self._latency_ms())
        self._release(request)
        return response

    def _release(self, request) -> None:
        """Let the batch's objects die with their last reference, now.

        DRF's view, request and response refer to each other, so whatever they hold waits
        for the garbage collector; for a 100-row batch that is hundreds of dicts and lists
        per request, which made collections long and frequent. The log holds its own copy.
        """
        self._batch = self._instances = None
        data = getattr(request, "_full_data", None)
        if type(data) is dict:  # the parsed JSON body
            data.clear()

    def _latency_ms(self) -> float:
        started = getattr(self, "_started", None)
        return (time.perf_counter() - started) * 1000 if started else 0.0

    def _log(self, token: ApiToken, status_code: int) -> None:
        request = self.request
        predict_log(token=token, status_code=status_code, latency_ms=self._latency_ms(),
                    batch=getattr(self, "_batch", None),
                    instances=getattr(self, "_instances", None),
                    multipart=request.content_type.startswith("multipart/"),
                    content_length=request.META.get("CONTENT_LENGTH"))


def predictions_output(batch: PredictionBatch) -> dict:
    """The answer's data: the predictions rendered here, as one JSON fragment, so that it
    holds one bytes object instead of a dict per prediction."""
    predictions = orjson.dumps([
        {"id": p.id, "label": p.label, "confidence": p.confidence,
         "probabilities": p.probabilities}
        for p in batch.predictions
    ])
    return {"model_version": batch.model_version, "predictions": orjson.Fragment(predictions)}


def predict_log(*, token: ApiToken, status_code: int, latency_ms: float,
                batch: PredictionBatch | None, instances: list | None, multipart: bool,
                content_length: str | None) -> None:
    """Hand one predict request's log to the writer: a row per prediction (with each
    instance that is small enough to keep for feedback), or one row for a refusal."""
    log = RequestLog(project_id=token.project_id, token_id=token.pk, status_code=status_code,
                     latency_ms=latency_ms, created_at=timezone.now())
    if batch is not None and status_code < 400:
        log.model_version_id, log.predictions = batch.model_version_id, batch.predictions
        log.instances = _keepable(instances, multipart, content_length)
    prediction_log_record(log)


def _keepable(instances: list, multipart: bool, content_length: str | None) -> list | None:
    """The instances to keep for feedback: all as sent when the JSON body is within the
    limit (so each one is), else each checked on its own."""
    limit = settings.PREDICTION_LOG_INSTANCE_MAX_BYTES
    if limit <= 0:
        return None
    if not multipart:
        try:
            length = int(content_length or -1)
        except ValueError:
            length = -1
        if 0 <= length <= limit:
            return instances
        return [_dumped_within(i, limit) for i in instances]
    return [instance_keepable(i, max_bytes=limit) for i in instances]


def _dumped_within(instance, limit: int) -> bytes | None:
    """A parsed JSON instance as the JSON the log stores (serialized once, here), or None
    when it is over ``limit``."""
    try:
        data = orjson.dumps(instance)
    except TypeError:  # not JSON after all: the log's own sanitizing path takes it
        return instance_keepable(instance, max_bytes=limit)
    return data if len(data) <= limit else None
