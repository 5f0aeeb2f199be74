"""API access to a project: project tokens by scope, people (session or personal token) by role."""
from __future__ import annotations

from collections.abc import Sequence

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from annotation.errors import NotAMember
from annotation.models import Project
from annotation.services import LABELING_ROLES, SCIENCE_ROLES, member_require
from serving.models import ApiToken


def _project_or_404(view) -> Project:
    slug = view.kwargs.get("slug")
    project = Project.objects.select_related("owner").filter(slug=slug).first()
    if project is None:
        raise NotFound(f"no project {slug!r}")
    return project


class _PersonRole(BasePermission):
    """Allow a signed-in member, or a personal token of the URL's project, holding ``roles``."""

    roles: Sequence[str] = ()

    def person(self, request: Request, project: Project):
        """Return the person acting, or None (with ``self.message`` set) if there is none."""
        token = request.auth
        if isinstance(token, ApiToken):
            if token.user_id is None:
                return None
            if token.project_id != project.pk:
                self.message = "this token belongs to another project"
                return None
        user = request.user
        if user is None or not user.is_authenticated:
            return None
        try:
            member_require(project=project, user=user, roles=self.roles)
        except NotAMember as exc:
            self.message = exc.message
            return None
        return user


class CanManageProjectData(_PersonRole):
    """Allow importing and exporting: an ``admin``-scoped token of the URL's project, or an
    owner or scientist of it (session or personal token). Sets ``view.project`` and
    ``view.acting_user``."""

    message = "you may not import or export data of this project"
    roles = SCIENCE_ROLES

    def has_permission(self, request: Request, view) -> bool:
        project = _project_or_404(view)
        token = request.auth
        if isinstance(token, ApiToken) and token.user_id is None:
            if token.project_id != project.pk:
                self.message = "this token belongs to another project"
                return False
            if ApiToken.Scope.ADMIN not in token.scopes:
                self.message = "this token lacks the 'admin' scope"
                return False
            view.project, view.acting_user = project, project.owner
            return True
        user = self.person(request, project)
        if user is None:
            return False
        view.project, view.acting_user = project, user
        return True


class CanLabelProject(_PersonRole):
    """Allow labeling through the API: a member of the URL's project, signed in or with a
    personal token. Project tokens act for no person, so they cannot label. Sets
    ``view.project`` and ``view.annotator``; services check the role again."""

    message = "labeling needs a personal token (create_user --token) or a signed-in member"
    roles = LABELING_ROLES

    def has_permission(self, request: Request, view) -> bool:
        project = _project_or_404(view)
        user = self.person(request, project)
        if user is None:
            return False
        view.project, view.annotator = project, user
        return True
