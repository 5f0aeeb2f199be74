"""``GET /api/v1/projects/<slug>/labels/suspicious``: the labels that are probably wrong, for
an owner, a scientist or an ``admin``-scoped project token."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import SCIENCE_ROLES, member_require
from annotation.apis import AUTHENTICATION, SCHEMA_AUTH
from annotation.permissions import MANAGER_REFUSAL_EXAMPLES, CanManageProjectData
from core.api_docs import THROTTLED, error_examples, error_responses
from core.throttling import TokenScopedRateThrottle
from learning.suspicion_selectors import (
    label_suspicion_count,
    label_suspicion_list,
    label_suspicion_run,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 10**6


class SuspicionSerializer(serializers.Serializer):
    sample = serializers.IntegerField(source="sample_id")
    external_id = serializers.CharField()
    split = serializers.ChoiceField(choices=["pool", "test"])
    label = serializers.CharField(source="value", help_text="The sample's current label.")
    likely_label = serializers.CharField(
        source="likely", help_text="What the cross-validated model, or the annotators' "
                                   "majority, says the label is.")
    score = serializers.FloatField(
        help_text="0..1, higher is more suspicious: 1 - the label's out-of-sample probability "
                  "(model), or 1 - the majority's share of the current labels (disagreement).")
    reason = serializers.ChoiceField(choices=["model", "disagreement"])
    version = serializers.IntegerField(allow_null=True,
                                       help_text="The retrain after which it was judged.")


class SuspicionListSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        allow_null=True, help_text="The retrain after which the list was computed; null before.")
    computed_at = serializers.DateTimeField(allow_null=True)
    labels_judged = serializers.IntegerField(
        help_text="Pool labels the model judged (the most recent, at most 50,000).")
    folds = serializers.IntegerField(help_text="Cross-validation folds (0: not judged).")
    note = serializers.CharField(help_text="Why the model judged nothing, if it did not.")
    count = serializers.IntegerField(help_text="Probably wrong current labels in all.")
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()
    results = SuspicionSerializer(many=True)


_EXAMPLE = {
    "version": 7, "computed_at": "2026-12-01T17:40:00Z", "labels_judged": 3980, "folds": 5,
    "note": "", "count": 2, "offset": 0, "limit": 100,
    "results": [
        {"sample": 4211, "external_id": "img_4211", "split": "pool", "label": "1",
         "likely_label": "7", "score": 0.981, "reason": "model", "version": 7},
        {"sample": 977, "external_id": "", "split": "test", "label": "4",
         "likely_label": "9", "score": 0.5, "reason": "disagreement", "version": 7},
    ],
}


class LabelSuspicionListApi(APIView):
    """The project's current labels that are probably wrong, most suspicious first: after
    each retrain, cross-validated probabilities and confident learning judge the labeled
    pool, and (overlap > 1) samples whose annotators disagree join the list. A label
    corrected since (or undone, or changed) leaves the list at once."""

    authentication_classes = AUTHENTICATION
    permission_classes = [CanManageProjectData]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"

    class InputSerializer(serializers.Serializer):
        limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
        offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, default=0)

    @extend_schema(
        operation_id="labels_suspicious_list",
        auth=SCHEMA_AUTH,
        parameters=[
            OpenApiParameter("limit", int, default=DEFAULT_LIMIT,
                             description=f"Rows to return, 1 to {MAX_LIMIT}."),
            OpenApiParameter("offset", int, default=0,
                             description="Position in the list to start from."),
        ],
        responses={200: SuspicionListSerializer, **error_responses(400, 401, 403, 404, 429)},
        examples=[
            OpenApiExample("Two suspicious labels", response_only=True, status_codes=["200"],
                           value=_EXAMPLE),
            *error_examples({
                "400": ("Limit too large", "invalid",
                        f"limit: Ensure this value is less than or equal to {MAX_LIMIT}.",
                        {"limit": [f"Ensure this value is less than or equal to {MAX_LIMIT}."]}),
                **MANAGER_REFUSAL_EXAMPLES,
                "429": THROTTLED,
            }),
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        project, limit = self.project, query.validated_data["limit"]
        offset = query.validated_data["offset"]
        member_require(project=project, user=self.acting_user, roles=SCIENCE_ROLES)
        run = label_suspicion_run(project=project)
        body = {
            "version": run.version.number if run and run.version else None,
            "computed_at": run.computed_at if run else None,
            "labels_judged": run.labels_judged if run else 0,
            "folds": run.folds if run else 0,
            "note": run.note if run else "",
            "count": label_suspicion_count(project=project),
            "offset": offset, "limit": limit,
            "results": label_suspicion_list(project=project, start=offset, limit=limit),
        }
        return Response(SuspicionListSerializer(body).data)
