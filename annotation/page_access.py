"""Project look-ups shared by the HTML pages of every app: 404 unless visible, 403 by role."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from annotation.errors import DomainError
from annotation.models import Project
from annotation.selectors import project_get_for_user
from annotation.services import SCIENCE_ROLES, member_require


def project_or_404(request: HttpRequest, slug: str) -> Project:
    """Return the project if the user is a member (a non-member gets 404, not a hint)."""
    project = project_get_for_user(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


def science_project_or_404(request: HttpRequest, slug: str) -> Project:
    """Return the project for its owners and scientists; raise NotAMember for annotators."""
    project = project_or_404(request, slug)
    member_require(project=project, user=request.user, roles=SCIENCE_ROLES)
    return project


def forbidden(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return render(request, "annotation/forbidden.html", {"message": exc.message}, status=403)
