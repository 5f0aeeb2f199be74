"""Permission classes: a token acts only on its own project, within its scopes."""
from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from annotation.models import ApiToken
from annotation.permissions import CanManageProjectData, project_not_found


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



class CanMonitorProject(CanManageProjectData):
    """Allow reading the monitoring numbers: a ``monitor``-scoped token of the URL's
    project, or an owner or scientist of it (session or personal token). Sets
    ``view.project``."""

    message = "you may not read this project's monitoring"
    token_scope = ApiToken.Scope.MONITOR
