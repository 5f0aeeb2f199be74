"""Access to the HTML pages of every app: one decorator finds the project and checks the role."""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from annotation.errors import NotAMember
from annotation.models import Project
from annotation.selectors import project_get_for_user
from annotation.access import LABELING_ROLES, member_require
from core.errors import DomainError

def project_or_404(request: HttpRequest, slug: str) -> Project:
    """Return the project if the user is a member (a non-member gets 404, not a hint)."""
    project = project_get_for_user(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


def forbidden(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return render(request, "annotation/forbidden.html", {"message": exc.message}, status=403)


def project_page(
    *, methods: Sequence[str] = ("GET",), roles: Sequence[str] = LABELING_ROLES
) -> Callable:
    """Make ``view(request, project, **kwargs)`` a page of the project named by ``slug``.

    Signed-in users only; other HTTP methods than ``methods`` get 405; a user who is not
    a member gets 404 (whether the project exists is nobody else's business); a member
    without one of ``roles`` gets the 403 page. Services check roles again, and a
    ``NotAMember`` they raise inside the view also becomes the 403 page.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @require_http_methods(list(methods))
        @functools.wraps(view)
        def page(request: HttpRequest, slug: str, **kwargs) -> HttpResponse:
            project = project_or_404(request, slug)
            try:
                if tuple(roles) != tuple(LABELING_ROLES):  # every member holds a labeling role
                    member_require(project=project, user=request.user, roles=roles)
                return view(request, project, **kwargs)
            except NotAMember as exc:
                return forbidden(request, exc)

        return page

    return decorate
