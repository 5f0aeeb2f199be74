"""Pages for projects and labeling; htmx requests get only the swapped partial."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import IntegrityError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.errors import DomainError, NotAMember
from annotation.exports import CONTENT_TYPES
from annotation.forms import ImportForm, LabelForm, ProjectCreateForm
from annotation.models import Project, Sample
from annotation.selectors import (
    import_job_get,
    import_job_list,
    label_export_chunks,
    project_get_for_user,
    project_list_for_user,
    project_progress,
)
from annotation.services import (
    SCIENCE_ROLES,
    import_job_create,
    import_job_start,
    label_submit,
    member_require,
    project_create,
    sample_lease_next,
)
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
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(owner=request.user, **form.cleaned_data)
        except IntegrityError:
            form.add_error("slug", "a project with this slug exists already")
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("project-import", project.slug)
    status = 400 if form.errors else 200
    return render(request, "annotation/project_new.html", {"form": form}, status=status)


def _science_project_or_404(request: HttpRequest, slug: str) -> Project:
    project = _project_or_404(request, slug)
    member_require(project=project, user=request.user, roles=SCIENCE_ROLES)
    return project


def _forbidden(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return render(request, "annotation/forbidden.html", {"message": exc.message}, status=403)


@login_required
@require_http_methods(["GET", "POST"])
def project_import(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        project = _science_project_or_404(request, slug)
    except NotAMember as exc:
        return _forbidden(request, exc)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        files = form.cleaned_data["files"]
        try:
            job = import_job_create(
                project=project, user=request.user,
                upload=files[0] if len(files) == 1 else None,
                image_files=files if len(files) > 1 else (),
                options=form.options(),
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            job = import_job_start(job=job)
            return redirect("import-job", project.slug, job.pk)
    context = {"project": project, "form": form, "jobs": import_job_list(project=project)}
    status = 400 if form.errors else 200
    return render(request, "annotation/project_import.html", context, status=status)


@login_required
@require_http_methods(["GET"])
def import_job(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    try:
        project = _science_project_or_404(request, slug)
    except NotAMember as exc:
        return _forbidden(request, exc)
    job = import_job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("no such import")
    template = "annotation/import_job.html"
    if request.htmx:
        template += "#job-progress"
    return render(request, template, {"project": project, "job": job})


def export_response(*, project: Project, history: bool, fmt: str) -> StreamingHttpResponse:
    """Return a streamed download of the project's labels; nothing is held in memory."""
    response = StreamingHttpResponse(
        label_export_chunks(project=project, history=history, fmt=fmt),
        content_type=CONTENT_TYPES[fmt],
    )
    name = f"{project.slug}-labels{'-history' if history else ''}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET"])
def label_export(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    try:
        project = _science_project_or_404(request, slug)
    except NotAMember as exc:
        return _forbidden(request, exc)
    history = request.GET.get("history", "").lower() in ("1", "true", "yes")
    return export_response(project=project, history=history, fmt=fmt)


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
