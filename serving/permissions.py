"""Permission classes: a token acts only on its own project, within its scopes."""
from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from annotation.access import SCIENCE_ROLES
from annotation.models import ApiToken
from annotation.permissions import _PersonRole, _project_or_404, project_not_found


class TokenHasProjectScope(BasePermission):
    """Allow a token on the URL's project when it carries one of the view's ``required_scopes``.

    A token of another project gets the same 404 as a project that does not exist, so it
    learns neither the other project's data nor whether it exists.
    """

    message = "this token may not do that on this project"

    def has_permission(self, request: Request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        slug = view.kwargs.get("slug")
        if token.project.slug != slug:  # unknown or another project's: the same 404
            raise project_not_found(slug)
        required = tuple(getattr(view, "required_scopes", ()))
        if not required or not set(required) & set(token.scopes):
            wanted = " or ".join(f"'{s}'" for s in required) or "a declared"
            self.message = f"this token lacks the {wanted} scope"
            return False
        return True


class CanMonitorProject(_PersonRole):
    """Allow reading the monitoring numbers: a ``monitor``-scoped token of the URL's
    project, or an owner or scientist of it (session or personal token). Sets
    ``view.project``."""

    message = "you may not read this project's monitoring"
    roles = SCIENCE_ROLES

    def has_permission(self, request: Request, view) -> bool:
        token = request.auth
        if isinstance(token, ApiToken) and token.user_id is None:
            project = _project_or_404(view)
            if token.project_id != project.pk:
                raise project_not_found(project.slug)
            if ApiToken.Scope.MONITOR not in token.scopes:
                self.message = "this token lacks the 'monitor' scope"
                return False
            view.project = project
            return True
        project, user, _membership = self.person(request, view)
        if user is None:
            return False
        view.project = project
        return True
