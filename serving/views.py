"""Pages of the serving app: a project's API tokens and its monitoring."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode

from annotation.models import ApiToken, Project
from annotation.access import SCIENCE_ROLES
from annotation.page_access import project_page
from serving.forms import TokenForm
from serving.monitoring_selectors import WINDOWS, monitoring_summary, monitoring_versions
from serving.rules.selectors import alerts_open, project_firings, routing_unkept, rule_list
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


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def project_monitoring(request: HttpRequest, project: Project) -> HttpResponse:
    """The monitoring page: the JSON's numbers as tables (refreshed by htmx every 30 s, the
    partial alone) and charts drawn from the JSON by static/js/monitoring.js."""
    window = request.GET.get("window")
    window = window if window in WINDOWS else "24h"
    versions = monitoring_versions(project=project)
    version = request.GET.get("version", "")
    version = int(version) if version.isdigit() and int(version) in versions else None
    summary = monitoring_summary(project=project, window=window, version=version)
    predicted, training = summary["classes"]["predicted"], summary["classes"]["training"] or {}
    labels = list(dict.fromkeys([*project.labels, *predicted, *training]))
    query = {"window": window, **({"version": version} if version is not None else {})}
    context = {
        "project": project, "window": window, "windows": list(WINDOWS), "version": version,
        "versions": versions, "m": summary,
        "class_rows": [(label, predicted.get(label, 0), training.get(label)) for label in labels],
        "api_url": f"{reverse('api-monitoring', args=[project.slug])}?{urlencode(query)}",
        "page_url": f"{reverse('project-monitoring', args=[project.slug])}?{urlencode(query)}",
        "version_query": f"&version={version}" if version is not None else "",
        "rules": rule_list(project=project), "firings": project_firings(project=project),
        "alerts": alerts_open(project=project), "unkept": routing_unkept(project=project),
    }
    if getattr(request, "htmx", False):
        return render(request, "serving/_monitoring_tables.html", context)
    return render(request, "serving/monitoring.html", context)
