"""API access to a project: project tokens by scope, people (session or personal token) by role."""
from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from annotation.access import LABELING_ROLES, SCIENCE_ROLES, member_require
from annotation.errors import NotAMember
from annotation.models import ApiToken, Membership, Project
from annotation.selectors import membership_get


def project_not_found(slug: object) -> NotFound:
    """The one answer for a project that does not exist *or* that the caller may not reach
    (another project's token, a non-member), so a slug's existence never leaks."""
    return NotFound(f"no project {slug!r} that these credentials can reach")


# The OpenAPI example of that answer, for every project-scoped view.
PROJECT_NOT_FOUND_EXAMPLE = ("Unknown project", "not_found",
                             str(project_not_found("nope").detail), None)
# The OpenAPI examples of the refusals of an API for owners, scientists and admin tokens.
MANAGER_REFUSAL_EXAMPLES = {
    "401": ("Bad token", "authentication_failed", "invalid or revoked token", None),
    "403": ("Annotator", "permission_denied",
            "you have no owner/scientist role in project 'digits'", None),
    "404": PROJECT_NOT_FOUND_EXAMPLE,
}


def _project_or_404(view) -> Project:
    slug = view.kwargs.get("slug")
    project = Project.objects.select_related("owner").filter(slug=slug).first()
    if project is None:
        raise project_not_found(slug)
    return project


class _PersonRole(BasePermission):
    """Allow a signed-in member, or a personal token of the URL's project, holding ``roles``."""

    roles: Sequence[str] = ()

    def person(
        self, request: Request, view
    ) -> tuple[Project, AbstractBaseUser | None, Membership | None]:
        """Return the URL's project (404 if none), the person acting (None, with
        ``self.message`` set, if there is none) and their membership (None for a superuser).

        One query when the caller is a member: the membership with its project.
        """
        user = request.user
        signed_in = user is not None and user.is_authenticated and user.pk is not None
        membership = membership_get(slug=view.kwargs.get("slug"), user=user) if signed_in else None
        project = membership.project if membership is not None else _project_or_404(view)
        token = request.auth
        if isinstance(token, ApiToken):
            if token.user_id is None:
                return project, None, None
            if token.project_id != project.pk:
                raise project_not_found(project.slug)
        if not signed_in:
            return project, None, None
        if membership is None and not user.is_superuser:
            raise project_not_found(project.slug)  # a non-member learns nothing of it
        try:
            member_require(project=project, user=user, roles=self.roles, membership=membership)
        except NotAMember as exc:
            self.message = exc.message
            return project, None, None
        return project, user, membership


class CanManageProjectData(_PersonRole):
    """Allow importing and exporting: an ``admin``-scoped token of the URL's project, or an
    owner or scientist of it (session or personal token). Sets ``view.project`` and
    ``view.acting_user``."""

    message = "you may not import or export data of this project"
    roles = SCIENCE_ROLES
    token_scope = ApiToken.Scope.ADMIN  # what a project token needs (subclasses change it)

    def has_permission(self, request: Request, view) -> bool:
        token = request.auth
        if isinstance(token, ApiToken) and token.user_id is None:
            project = _project_or_404(view)
            if token.project_id != project.pk:
                raise project_not_found(project.slug)
            if self.token_scope not in token.scopes:
                self.message = f"this token lacks the '{self.token_scope}' scope"
                return False
            view.project, view.acting_user = project, project.owner
            return True
        project, user, _membership = self.person(request, view)
        if user is None:
            return False
        view.project, view.acting_user = project, user
        return True


class CanLabelProject(_PersonRole):
    """Allow labeling through the API: a member of the URL's project, signed in or with a
    personal token. Project tokens act for no person, so they cannot label. Sets
    ``view.project``, ``view.annotator`` and ``view.membership``; services take the
    membership as proof of the role check (and check it themselves when not given one)."""

    message = "labeling needs a personal token (create_user --token) or a signed-in member"
    roles = LABELING_ROLES

    def has_permission(self, request: Request, view) -> bool:
        project, user, membership = self.person(request, view)
        if user is None:
            return False
        view.project, view.annotator, view.membership = project, user, membership
        return True
