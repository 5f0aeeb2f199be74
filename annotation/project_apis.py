"""What a project is, for API clients: the projects these credentials reach, and one of them.

A client (the Python client in ``client/``, a notebook) needs a project's kind, labels and
columns to build instances and read answers; until now only the pages showed them. A
project token (any scope) or a personal token reaches its own project; a signed-in user,
the projects they are a member of (every project for a superuser).
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import hooks
from annotation.apis import AUTHENTICATION, SCHEMA_AUTH
from annotation.models import ApiToken, Project
from annotation.permissions import PROJECT_NOT_FOUND_EXAMPLE, project_not_found
from annotation.selectors import project_list_for_user
from core.api_docs import THROTTLED, error_examples, error_responses
from core.throttling import TokenScopedRateThrottle

_ERRORS = {
    "401": ("Bad token", "authentication_failed", "invalid or revoked token", None),
    "403": ("Not signed in", "permission_denied", "signed-in users only", None),
    "404": PROJECT_NOT_FOUND_EXAMPLE,
    "429": THROTTLED,
}
_EXAMPLE = {"slug": "digits", "name": "Digits", "kind": "image",
            "labels": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], "columns": [],
            "image_size": 8, "batch_size": 50, "served_version": 3}


def _reachable(request: Request):
    token = request.auth
    if isinstance(token, ApiToken):
        return Project.objects.filter(pk=token.project_id)
    return project_list_for_user(user=request.user)


@extend_schema_serializer(component_name="Project")
class ProjectOutputSerializer(serializers.ModelSerializer):
    served_version = serializers.SerializerMethodField(
        help_text="The model version predict uses; null before the first model.")

    class Meta:
        model = Project
        fields = ["slug", "name", "kind", "labels", "columns", "image_size", "batch_size",
                  "served_version"]

    def get_served_version(self, project: Project) -> int | None:
        served = hooks.served_model(project=project)
        return served.number if served is not None else None


class _ProjectApi(APIView):
    authentication_classes = AUTHENTICATION
    permission_classes = [IsAuthenticated]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"


class ProjectListApi(_ProjectApi):
    """The projects these credentials reach: a token's own, or a signed-in member's."""

    @extend_schema(
        operation_id="projects_list", auth=SCHEMA_AUTH,
        responses={200: ProjectOutputSerializer(many=True), **error_responses(401, 403, 404, 429)},
        examples=[OpenApiExample("One project", response_only=True, status_codes=["200"],
                                 value=[_EXAMPLE]), *error_examples(_ERRORS)],
    )
    def get(self, request: Request) -> Response:
        return Response(ProjectOutputSerializer(_reachable(request), many=True).data)


class ProjectDetailApi(_ProjectApi):
    """One project: kind, labels, tabular columns, image size, batch size, served version."""

    @extend_schema(
        operation_id="projects_retrieve", auth=SCHEMA_AUTH,
        responses={200: ProjectOutputSerializer, **error_responses(401, 403, 404, 429)},
        examples=[OpenApiExample("A project", response_only=True, status_codes=["200"],
                                 value=_EXAMPLE), *error_examples(_ERRORS)],
    )
    def get(self, request: Request, slug: str) -> Response:
        project = _reachable(request).filter(slug=slug).first()
        if project is None:
            raise project_not_found(slug)
        return Response(ProjectOutputSerializer(project).data)
