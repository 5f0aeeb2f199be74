"""Permission classes: a token acts only on its own project, within its scopes."""
from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from annotation.models import Project
from annotation.models import ApiToken


class TokenHasProjectScope(BasePermission):
    """Allow a token on the URL's project when it carries one of the view's ``required_scopes``.

    A token of another project gets 403 (or 404 when the URL's project does not exist),
    never the other project's data.
    """

    message = "this token may not do that on this project"

    def has_permission(self, request: Request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        slug = view.kwargs.get("slug")
        if token.project.slug != slug:
            if not Project.objects.filter(slug=slug).exists():
                raise NotFound(f"no project {slug!r}")
            self.message = "this token belongs to another project"
            return False
        required = tuple(getattr(view, "required_scopes", ()))
        if not required or not set(required) & set(token.scopes):
            wanted = " or ".join(f"'{s}'" for s in required) or "a declared"
            self.message = f"this token lacks the {wanted} scope"
            return False
        return True
