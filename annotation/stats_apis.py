"""The labeling monitor as JSON: the numbers of the annotators page, for an owner, a
scientist or an ``admin``-scoped project token."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.annotator_stats import (
    DEFAULT_WINDOW,
    MODEL_SAMPLE_PER_ANNOTATOR,
    WINDOWS,
    annotator_stats,
)
from annotation.apis import AUTHENTICATION, SCHEMA_AUTH
from annotation.permissions import MANAGER_REFUSAL_EXAMPLES, CanManageProjectData
from core.api_docs import THROTTLED, error_examples, error_responses
from core.throttling import TokenScopedRateThrottle


class AnnotatorModelAgreementSerializer(serializers.Serializer):
    compared = serializers.IntegerField(
        help_text=f"The person's latest current labels predicted (at most "
                  f"{MODEL_SAMPLE_PER_ANNOTATOR}).")
    agreed = serializers.IntegerField(help_text="Of those, equal to the served model's label.")
    share = serializers.FloatField(allow_null=True)
    test_compared = serializers.IntegerField(
        help_text="Of the compared, on the held-out test split (never trained on).")
    test_agreed = serializers.IntegerField()
    test_share = serializers.FloatField(allow_null=True)


class AnnotatorRowSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField()
    labels = serializers.IntegerField(help_text="Labels given in the window (not corrections).")
    active_hours = serializers.IntegerField(
        help_text="Clock hours (UTC) with at least one label.")
    labels_per_active_hour = serializers.FloatField(allow_null=True)
    median_ms = serializers.FloatField(allow_null=True,
                                       help_text="Median duration_ms of the timed labels.")
    p90_ms = serializers.FloatField(allow_null=True)
    timed_labels = serializers.IntegerField(source="timed")
    untimed_labels = serializers.IntegerField(source="untimed",
                                              help_text="Labels without a duration_ms.")
    skips = serializers.IntegerField()
    superseded = serializers.IntegerField(
        help_text="Labels of the window no longer current (undone, changed or corrected).")
    corrected_in_review = serializers.IntegerField(source="corrected")
    corrections_made = serializers.IntegerField(help_text="Review corrections this person made.")
    model = AnnotatorModelAgreementSerializer(allow_null=True)


class AnnotatorPairSerializer(serializers.Serializer):
    first_id = serializers.IntegerField()
    second_id = serializers.IntegerField()
    first = serializers.CharField()
    second = serializers.CharField()
    shared = serializers.IntegerField(help_text="Samples both labeled (current labels).")
    agreed = serializers.IntegerField()
    observed = serializers.FloatField(allow_null=True, help_text="agreed / shared")
    kappa = serializers.FloatField(allow_null=True,
                                   help_text="Cohen's κ; null when undefined (one category).")


class AnnotatorFleissSerializer(serializers.Serializer):
    applicable = serializers.BooleanField(help_text="False when the project's overlap is 1.")
    items = serializers.IntegerField(help_text="Samples with at least two current labels.")
    ratings = serializers.IntegerField()
    kappa = serializers.FloatField(allow_null=True)


class AnnotatorStatsSerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=list(WINDOWS))
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField()
    annotators = AnnotatorRowSerializer(many=True, source="rows")
    pairwise = AnnotatorPairSerializer(many=True, source="pairs")
    fleiss = AnnotatorFleissSerializer()
    model_version = serializers.IntegerField(
        allow_null=True, help_text="The served version whose predictions were compared.")
    model_sample_limit = serializers.IntegerField()


_EXAMPLE = {
    "window": "7d", "since": "2026-11-14T20:00:00Z", "until": "2026-11-21T20:00:00Z",
    "annotators": [{
        "user_id": 3, "username": "alice", "role": "annotator", "labels": 6,
        "active_hours": 3, "labels_per_active_hour": 2.0, "median_ms": 3000.0,
        "p90_ms": 4600.0, "timed_labels": 5, "untimed_labels": 1, "skips": 0,
        "superseded": 1, "corrected_in_review": 0, "corrections_made": 0,
        "model": {"compared": 5, "agreed": 3, "share": 0.6, "test_compared": 0,
                  "test_agreed": 0, "test_share": None},
    }],
    "pairwise": [{"first_id": 3, "second_id": 4, "first": "alice", "second": "bob",
                  "shared": 3, "agreed": 2, "observed": 0.6667, "kappa": 0.4}],
    "fleiss": {"applicable": True, "items": 7, "ratings": 14, "kappa": 0.6889},
    "model_version": 3, "model_sample_limit": MODEL_SAMPLE_PER_ANNOTATOR,
}


class AnnotatorStatsApi(APIView):
    """Per annotator over a window: labels, labels per active hour, median and p90 time per
    label, skips, superseded labels, agreement with the served model; Cohen's κ per pair
    and Fleiss' κ (overlap > 1). The numbers of the page ``/projects/<slug>/annotators/``."""

    authentication_classes = AUTHENTICATION
    permission_classes = [CanManageProjectData]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"

    class InputSerializer(serializers.Serializer):
        window = serializers.ChoiceField(choices=list(WINDOWS), default=DEFAULT_WINDOW)

    @extend_schema(
        operation_id="annotators_retrieve",
        auth=SCHEMA_AUTH,
        parameters=[OpenApiParameter("window", str, enum=list(WINDOWS), default=DEFAULT_WINDOW,
                                     description="The last 24 hours, 7 or 30 days, or all time.")],
        responses={200: AnnotatorStatsSerializer, **error_responses(400, 401, 403, 404, 429)},
        examples=[
            OpenApiExample("Seven days", response_only=True, status_codes=["200"],
                           value=_EXAMPLE),
            *error_examples({
                "400": ("Unknown window", "invalid", "window: \"1y\" is not a valid choice.",
                        {"window": ["\"1y\" is not a valid choice."]}),
                **MANAGER_REFUSAL_EXAMPLES,
                "429": THROTTLED,
            }),
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        stats = annotator_stats(project=self.project, user=self.acting_user,
                                window=query.validated_data["window"])
        return Response(AnnotatorStatsSerializer(stats).data)
