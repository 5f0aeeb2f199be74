"""Pages for projects and labeling; htmx requests get only the swapped partial."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from annotation.errors import DomainError
from annotation.forms import LabelForm
from annotation.models import Project, Sample
from annotation.selectors import project_get_for_user, project_list_for_user, project_progress
from annotation.services import label_submit, sample_lease_next
from learning.selectors import model_version_latest, model_version_list, model_version_served


def _project_or_404(request: HttpRequest, slug: str) -> Project:
    project = project_get_for_user(slug=slug, user=request.user)
    if project is None:
        raise Http404("no such project")
    return project


def _progress(project: Project):
    latest = model_version_latest(project=project)
    return project_progress(
        project=project, requested_at_label_count=latest.requested_at_label_count if latest else 0
    )


@login_required
@require_http_methods(["GET"])
def project_list(request: HttpRequest) -> HttpResponse:
    projects = project_list_for_user(user=request.user)
    return render(request, "annotation/project_list.html", {"projects": projects})


@login_required
@require_http_methods(["GET"])
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project_or_404(request, slug)
    context = {
        "project": project,
        "versions": model_version_list(project=project),
        "served": model_version_served(project=project),
        "progress": _progress(project),
    }
    template = "annotation/project_detail.html"
    if request.htmx:
        template += "#iterations"
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def label(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project_or_404(request, slug)
    form = LabelForm(request.POST or None, project=project)
    error = None
    if request.method == "POST":
        if form.is_valid():
            try:
                sample = Sample.objects.get(pk=form.cleaned_data["sample"], project=project)
                label_submit(
                    sample=sample,
                    annotator=request.user,
                    value=form.cleaned_data["value"],
                    duration_ms=form.cleaned_data["duration_ms"],
                )
            except Sample.DoesNotExist:
                error = "that sample is not part of this project"
            except DomainError as exc:
                error = exc.message
        else:
            error = "; ".join(m for messages in form.errors.values() for m in messages)
    try:
        sample = sample_lease_next(project=project, annotator=request.user)
    except DomainError as exc:
        return render(request, "annotation/forbidden.html", {"message": exc.message}, status=403)
    context = {
        "project": project,
        "sample": sample,
        "error": error,
        "label_keys": project.label_keys(),
        "progress": _progress(project),
        "served": model_version_served(project=project),
    }
    template = "annotation/label.html#sample-card" if request.htmx else "annotation/label.html"
    return render(request, template, context)


@login_required
@require_http_methods(["GET"])
def sample_image(request: HttpRequest, slug: str, sample_id: int) -> FileResponse:
    project = _project_or_404(request, slug)
    sample = Sample.objects.filter(pk=sample_id, project=project).exclude(image="").first()
    if sample is None:
        raise Http404("no such image")
    response = FileResponse(default_storage.open(sample.image.name, "rb"))
    response["Cache-Control"] = "private, max-age=3600"
    return response
