"""The feedback API: the true label of an earlier prediction, or of a new instance."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
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
from serving.apis.predict import EXAMPLE_PNG_BASE64
from core.remembered import RememberedTokenMixin
from annotation.authentication import ProjectTokenAuthentication
from annotation.models import ApiToken
from serving.permissions import TokenHasProjectScope
from core.request_limits import BodySizeLimitMixin
from core.serializers import StrictSerializer
from serving.services import feedback_record
from core.throttling import TokenScopedRateThrottle


class FeedbackApi(RememberedTokenMixin, ReusedPartsMixin, BodySizeLimitMixin, APIView):
    """Record the true label of a prediction (by its ``id``) or of a new instance (``feedback``).

    The instance becomes a labeled production sample in the pool, so it enters the training
    data and counts toward the next retrain; for a prediction, the log row also records the
    true label, which live accuracy is computed from. Repeating the feedback of a prediction
    changes nothing (``created`` false); another label corrects it, keeping the old one as
    history. With a ``prediction_id``, ``instance`` is only needed when the prediction's
    instance was too large to keep (``PREDICTION_LOG_INSTANCE_MAX_BYTES``).
    """

    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [TokenHasProjectScope]
    throttle_classes = [TokenScopedRateThrottle]
    parser_classes = [OrjsonParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FirstRendererNegotiation
    required_scopes = (ApiToken.Scope.FEEDBACK,)
    throttle_scope = "feedback"

    @extend_schema_serializer(component_name="FeedbackInput")
    class InputSerializer(StrictSerializer):
        prediction_id = serializers.UUIDField(
            required=False, help_text="The id the predict API returned with the prediction.")
        instance = serializers.DictField(
            required=False,
            help_text="An instance shaped like a predict instance; needed without a "
            "prediction_id, or when the prediction's instance was not kept.")
        label = serializers.CharField(max_length=200, help_text="The true label.")

        def validate(self, attrs: dict) -> dict:
            if "prediction_id" not in attrs and "instance" not in attrs:
                raise ValidationError("send a 'prediction_id', an 'instance', or both")
            return attrs

    @extend_schema_serializer(component_name="FeedbackOutput")
    class OutputSerializer(serializers.Serializer):
        prediction_id = serializers.UUIDField(allow_null=True)
        sample_id = serializers.IntegerField(allow_null=True,
                                             help_text="The production sample it became.")
        label = serializers.CharField()
        predicted_label = serializers.CharField(allow_null=True)
        correct = serializers.BooleanField(allow_null=True,
                                           help_text="Null for feedback on a new instance.")
        created = serializers.BooleanField(help_text="False when it repeats earlier feedback.")

    @extend_schema(
        operation_id="feedback",
        request=InputSerializer,
        responses={200: OutputSerializer, 201: OutputSerializer,
                   **error_responses(400, 401, 403, 404, 413, 429)},
        examples=[
            OpenApiExample("For a prediction", request_only=True,
                           value={"prediction_id": "0b7f9f1e-3c3e-4a59-9a51-3d2f4f8f6a10",
                                  "label": "7"}),
            OpenApiExample("For a new instance", request_only=True,
                           value={"instance": {"image_base64": EXAMPLE_PNG_BASE64},
                                  "label": "7"}),
            OpenApiExample("Recorded", response_only=True, status_codes=["201", "200"], value={
                "prediction_id": "0b7f9f1e-3c3e-4a59-9a51-3d2f4f8f6a10", "sample_id": 4711,
                "label": "7", "predicted_label": "1", "correct": False, "created": True}),
            *error_examples({
                "400": ("Unknown label", "invalid_label", "'x' is not a label of project 'digits'",
                        {"value": "x", "labels": ["0", "1"]}),
                "401": ("No token", "not_authenticated",
                        "Authentication credentials were not provided.", None),
                "403": ("Missing scope", "permission_denied",
                        "this token lacks the 'feedback' scope", None),
                "404": ("Unknown prediction", "unknown_prediction", "this project has no prediction "
                        "'0b7f9f1e-3c3e-4a59-9a51-3d2f4f8f6a10' (predictions are recorded "
                        "within about a second of being served)",
                        {"prediction_id": "0b7f9f1e-3c3e-4a59-9a51-3d2f4f8f6a10"}),
                "413": TOO_LARGE,
                "429": THROTTLED,
            }),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = request.auth
        # A personal token (one with a user) labels as that person; a project token as the
        # project's feedback user.
        annotator = token.user if getattr(token, "user_id", None) else None
        feedback = feedback_record(project=token.project, annotator=annotator,
                                   **serializer.validated_data)
        body = self.OutputSerializer({
            "prediction_id": feedback.prediction_id, "sample_id": feedback.sample_id,
            "label": feedback.label, "predicted_label": feedback.predicted_label,
            "correct": feedback.correct, "created": feedback.created,
        }).data
        return Response(body, status=status.HTTP_201_CREATED if feedback.created
                        else status.HTTP_200_OK)
