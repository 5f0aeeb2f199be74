"""KPI rule APIs: list, create, show, change, delete a project's rules, and list a rule's
firings. An ``admin`` token of the project, or an owner or scientist (session or personal
token)."""
from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.authentication import ProjectTokenAuthentication
from annotation.permissions import PROJECT_NOT_FOUND_EXAMPLE, CanManageProjectData
from core.api_docs import THROTTLED, TOO_LARGE, error_examples, error_responses
from core.request_limits import BodySizeLimitMixin
from core.throttling import TokenScopedRateThrottle
from serving.models import Rule
from serving.rules.selectors import firing_output, rule_firings, rule_get, rule_list, rule_output
from serving.rules.services import rule_create, rule_delete, rule_update

RULE_EXAMPLE = {"metric": "live_accuracy", "op": "<", "threshold": 0.8, "window": "1h",
                "min_count": 50, "cooldown_minutes": 30, "actions": ["retrain", "route", "alert"],
                "route_count": 20}
RULE_OUT = {"id": 3, "name": "", "column": "", "random_share": 0.2, "enabled": True,
            "broken_reason": "",
            **RULE_EXAMPLE, "actions": ["route", "retrain", "alert"],
            "last_evaluated_at": "2026-12-01T16:02:00Z", "last_value": 0.74, "last_count": 61,
            "last_status": "fired", "last_fired_at": "2026-12-01T16:02:00Z",
            "created_at": "2026-12-01T15:00:00Z", "updated_at": "2026-12-01T15:00:00Z"}
FIRING_OUT = {"id": 9, "rule": 3, "fired_at": "2026-12-01T16:02:00Z",
              "condition": "live_accuracy < 0.8 over 1h", "value": 0.74, "count": 61,
              "actions": ["route", "retrain", "alert"], "sample_ids": [5012, 5013],
              "notes": ["routed 2 of 40 recent input(s), margin strategy, spread over "
                        "predicted classes", "retrain: v7 queued; served only if it beats "
                        "the served model on the test labels"],
              "retrain": "requested", "version": 7, "version_status": "ready",
              "version_served": True, "alert": {"open": False,
                                                "resolved_at": "2026-12-01T16:40:00Z"}}



@extend_schema_serializer(component_name="RuleInput")
class RuleInput(serializers.Serializer):
    """Documents the body; ``serving.rules.validation.rule_check`` is the one check."""

    name = serializers.CharField(required=False, max_length=200)
    metric = serializers.ChoiceField(choices=Rule.Metric.values)
    column = serializers.CharField(required=False, help_text="drift only: that column's score")
    op = serializers.ChoiceField(choices=Rule.Op.values)
    threshold = serializers.FloatField()
    window = serializers.CharField(required=False, help_text="1h (default), 24h, 7d or 30d")
    min_count = serializers.IntegerField(required=False, min_value=0, help_text="default 0")
    cooldown_minutes = serializers.IntegerField(required=False, min_value=1,
                                                help_text="default 60")
    actions = serializers.ListField(child=serializers.ChoiceField(choices=Rule.Action.values))
    route_count = serializers.IntegerField(required=False, min_value=1, max_value=500,
                                           help_text="default 20")
    random_share = serializers.FloatField(
        required=False, min_value=0, max_value=1,
        help_text=f"default {Rule.RANDOM_SHARE_DEFAULT}: the share of route_count drawn at "
                  "random from the served version's predictions and held out as test samples; "
                  "their labels count as live accuracy and in the promotion check")
    enabled = serializers.BooleanField(required=False, help_text="default true")


@extend_schema_serializer(component_name="Rule")
class RuleOutput(serializers.Serializer):
    locals().update({field: serializers.JSONField() for field in RULE_OUT})


@extend_schema_serializer(component_name="RuleFiring")
class FiringOutput(serializers.Serializer):
    locals().update({field: serializers.JSONField() for field in FIRING_OUT})


_ERRORS = {
    "400": ("Invalid rule", "invalid", "threshold: live_accuracy is a share: give a number "
            "from 0 to 1", {"threshold": ["live_accuracy is a share: give a number from 0 to 1"]}),
    "401": ("No token", "not_authenticated", "Authentication credentials were not provided.", None),
    "403": ("Missing scope", "permission_denied", "this token lacks the 'admin' scope", None),
    "404": PROJECT_NOT_FOUND_EXAMPLE,
    "413": TOO_LARGE,
    "429": THROTTLED,
}


def _errors(*codes: int) -> list[OpenApiExample]:
    return error_examples({str(code): _ERRORS[str(code)] for code in codes})


class _RulesApi(BodySizeLimitMixin, APIView):
    authentication_classes = [ProjectTokenAuthentication, SessionAuthentication]
    permission_classes = [CanManageProjectData]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "admin"

    def rule(self, rule_id: int) -> Rule:
        rule = rule_get(project=self.project, rule_id=rule_id)
        if rule is None:
            raise NotFound(f"this project has no rule {rule_id}")
        return rule


class RuleListApi(_RulesApi):
    """The project's rules (GET), or a new one (POST; 400 names the refused field)."""

    @extend_schema(operation_id="rules_list", responses={200: RuleOutput(many=True),
                   **error_responses(401, 403, 404, 429)},
                   examples=[OpenApiExample("One rule", response_only=True, value=[RULE_OUT]),
                             *_errors(401, 403, 404, 429)])
    def get(self, request: Request, slug: str) -> Response:
        return Response([rule_output(rule) for rule in rule_list(project=self.project)])

    @extend_schema(operation_id="rules_create", request=RuleInput,
                   responses={201: RuleOutput, **error_responses(400, 401, 403, 404, 413, 429)},
                   examples=[OpenApiExample("Retrain on poor live accuracy", request_only=True,
                                            value=RULE_EXAMPLE),
                             OpenApiExample("Created", response_only=True, status_codes=["201"],
                                            value=RULE_OUT),
                             *_errors(400, 401, 403, 404, 413, 429)])
    def post(self, request: Request, slug: str) -> Response:
        rule = rule_create(project=self.project, data=request.data)
        return Response(rule_output(rule), status=status.HTTP_201_CREATED)


class RuleDetailApi(_RulesApi):
    """One rule: show (GET), change the fields given (PATCH; an edit switches a broken rule
    back on), delete with its firings (DELETE)."""

    @extend_schema(operation_id="rules_retrieve", responses={200: RuleOutput,
                   **error_responses(401, 403, 404, 429)},
                   examples=[OpenApiExample("A rule", response_only=True, value=RULE_OUT),
                             *_errors(401, 403, 404, 429)])
    def get(self, request: Request, slug: str, rule_id: int) -> Response:
        return Response(rule_output(self.rule(rule_id)))

    @extend_schema(operation_id="rules_update", request=RuleInput,
                   responses={200: RuleOutput, **error_responses(400, 401, 403, 404, 413, 429)},
                   examples=[OpenApiExample("Lower the threshold", request_only=True,
                                            value={"threshold": 0.7}),
                             OpenApiExample("Changed", response_only=True, status_codes=["200"],
                                            value={**RULE_OUT, "threshold": 0.7}),
                             *_errors(400, 401, 403, 404, 413, 429)])
    def patch(self, request: Request, slug: str, rule_id: int) -> Response:
        return Response(rule_output(rule_update(rule=self.rule(rule_id), data=request.data)))

    @extend_schema(operation_id="rules_destroy",
                   responses={200: inline_serializer("RuleDeleted", {
                       "id": serializers.IntegerField(), "deleted": serializers.BooleanField()}),
                       **error_responses(401, 403, 404, 429)},
                   examples=[OpenApiExample("Deleted", response_only=True, status_codes=["200"],
                                            value={"id": 3, "deleted": True}),
                             *_errors(401, 403, 404, 429)])
    def delete(self, request: Request, slug: str, rule_id: int) -> Response:
        rule = self.rule(rule_id)
        rule_id = rule.pk
        rule_delete(rule=rule)
        return Response({"id": rule_id, "deleted": True})


class RuleFiringsApi(_RulesApi):
    """A rule's firings, newest first: the value and count that fired it, the actions
    taken, the routed sample ids and the resulting model version (once known)."""

    @extend_schema(operation_id="rules_firings", responses={200: FiringOutput(many=True),
                   **error_responses(401, 403, 404, 429)},
                   parameters=[OpenApiParameter("limit", int, description="default 100, at most 1000")],
                   examples=[OpenApiExample("One firing", response_only=True, value=[FIRING_OUT]),
                             *_errors(401, 403, 404, 429)])
    def get(self, request: Request, slug: str, rule_id: int) -> Response:
        try:
            limit = min(max(int(request.query_params.get("limit", 100)), 1), 1000)
        except ValueError:
            limit = 100
        firings = rule_firings(rule=self.rule(rule_id), limit=limit)
        return Response([firing_output(firing) for firing in firings])
