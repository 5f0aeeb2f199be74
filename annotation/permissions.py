"""API access to a project's data: a project token with the admin scope, or a scientist's session."""
from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from annotation.errors import NotAMember
from annotation.models import Project
from annotation.services import SCIENCE_ROLES, member_require
from serving.models import ApiToken


class CanManageProjectData(BasePermission):
    """Allow importing and exporting: an ``admin``-scoped token of the URL's project, or a
    signed-in owner or scientist of it. Sets ``view.project`` and ``view.acting_user``."""

    message = "you may not import or export data of this project"

    def has_permission(self, request: Request, view) -> bool:
        slug = view.kwargs.get("slug")
        project = Project.objects.select_related("owner").filter(slug=slug).first()
        if project is None:
            raise NotFound(f"no project {slug!r}")
        token = request.auth
        if isinstance(token, ApiToken):
            if token.project_id != project.pk:
                self.message = "this token belongs to another project"
                return False
            if ApiToken.Scope.ADMIN not in token.scopes:
                self.message = "this token lacks the 'admin' scope"
                return False
            view.project, view.acting_user = project, project.owner
            return True
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        try:
            member_require(project=project, user=user, roles=SCIENCE_ROLES)
        except NotAMember as exc:
            self.message = exc.message
            return False
        view.project, view.acting_user = project, user
        return True
