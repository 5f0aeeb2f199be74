"""Pages of the serving app: a project's API tokens."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotation.models import ApiToken, Project
from annotation.access import SCIENCE_ROLES
from annotation.page_access import project_page
from serving.forms import TokenForm
from serving.selectors import api_token_list
from serving.services import api_token_create, api_token_revoke


@project_page(methods=("GET", "POST"), roles=SCIENCE_ROLES)
def project_tokens(request: HttpRequest, project: Project) -> HttpResponse:
    form = TokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        _token, new_key = api_token_create(
            project=project, scopes=form.cleaned_data["scopes"], name=form.cleaned_data["name"]
        )
        form = TokenForm()
    context = {"project": project, "form": form, "new_key": new_key,
               "tokens": api_token_list(project=project)}
    return render(request, "serving/tokens.html", context)


@project_page(methods=("POST",), roles=SCIENCE_ROLES)
def project_token_revoke(request: HttpRequest, project: Project, token_id: int) -> HttpResponse:
    token = ApiToken.objects.filter(pk=token_id, project=project, user__isnull=True).first()
    if token is None:
        raise Http404("no such token")
    api_token_revoke(token=token)
    return redirect("project-tokens", slug=project.slug)
