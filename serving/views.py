"""Pages of the serving app: a project's API tokens."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.errors import NotAMember
from annotation.page_access import forbidden, science_project_or_404
from serving.forms import TokenForm
from serving.models import ApiToken
from serving.selectors import api_token_list
from serving.services import api_token_create, api_token_revoke


@login_required
@require_http_methods(["GET", "POST"])
def project_tokens(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        project = science_project_or_404(request, slug)
    except NotAMember as exc:
        return forbidden(request, exc)
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


@login_required
@require_http_methods(["POST"])
def project_token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    try:
        project = science_project_or_404(request, slug)
    except NotAMember as exc:
        return forbidden(request, exc)
    token = ApiToken.objects.filter(pk=token_id, project=project, user__isnull=True).first()
    if token is None:
        raise Http404("no such token")
    api_token_revoke(token=token)
    return redirect("project-tokens", slug=project.slug)
