"""Pages for projects, imports, labeling and review; htmx requests get only the swapped partial."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import IntegrityError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation import hooks
from annotation.errors import NotAMember, SampleNotFound
from annotation.exports import CONTENT_TYPES
from annotation.forms import (
    ImportForm,
    LabelForm,
    ProjectCreateForm,
    ProjectSettingsForm,
    ReviewFilterForm,
)
from annotation.models import Project, Sample
from annotation.access import SCIENCE_ROLES, may_create_projects
from annotation.page_access import forbidden, project_page
from annotation.selectors import (
    Progress,
    import_job_get,
    import_job_list,
    label_export_chunks,
    project_list_for_user,
    project_progress,
    project_role,
    project_roles_for_user,
    project_settings_history,
    review_page,
    review_rows_for,
)
from annotation.services import (
    import_job_create,
    import_job_start,
    label_correct,
    label_submit,
    label_undo_last,
    project_create_by,
    project_settings_update,
    sample_lease_next,
    sample_skip,
)
from annotation.services.leases import sample_peek_next
from core.errors import DomainError


def progress_of(project: Project) -> Progress:
    """Labeling progress, with the labels left until the retrain that the batch makes due."""
    return project_progress(project=project,
                            requested_at_label_count=hooks.batch_start(project=project))


@login_required
@require_http_methods(["GET"])
def project_list(request: HttpRequest) -> HttpResponse:
    projects = project_list_for_user(user=request.user)
    roles = project_roles_for_user(user=request.user)
    rows = [(project, roles.get(project.pk), roles.get(project.pk) in SCIENCE_ROLES)
            for project in projects]
    return render(request, "annotation/project_list.html",
                  {"rows": rows, "may_create": may_create_projects(request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    if not may_create_projects(request.user):
        return forbidden(request, NotAMember("only project owners and staff may create projects"))
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create_by(user=request.user, **form.cleaned_data)
        except IntegrityError:
            form.add_error("slug", "a project with this slug exists already")
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("project-import", project.slug)
    status = 400 if form.errors else 200
    return render(request, "annotation/project_new.html", {"form": form}, status=status)


@project_page(methods=("GET", "POST"), roles=SCIENCE_ROLES)
def project_import(request: HttpRequest, project: Project) -> HttpResponse:
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


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def import_job(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
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


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def label_export(request: HttpRequest, project: Project, fmt: str) -> HttpResponse:
    history = request.GET.get("history", "").lower() in ("1", "true", "yes")
    return export_response(project=project, history=history, fmt=fmt)


def _card(request: HttpRequest, project: Project, *, error: str | None = None,
          status: int = 200) -> HttpResponse:
    """Lease the annotator's next sample and render the card (the whole page without htmx)."""
    sample = sample_lease_next(project=project, annotator=request.user)
    following = None
    if sample is not None and sample.image:
        following = sample_peek_next(project=project, annotator=request.user)
    served = hooks.served_model(project=project)
    context = {
        "project": project,
        "sample": sample,
        "following": following if following is not None and following.image else None,
        "error": error,
        "label_keys": project.label_keys(),
        "progress": progress_of(project),
        "served": served,
        "hint": _hint(project, sample, served),
        "is_scientist": project_role(project=project, user=request.user) in SCIENCE_ROLES,
    }
    template = "annotation/label.html#sample-card" if request.htmx else "annotation/label.html"
    return render(request, template, context, status=status)


def _hint(project: Project, sample: Sample | None, served) -> str:
    """Say how the card shows the model's suggestion: loaded after render, or why not."""
    if sample is None or not project.show_suggestion:
        return ""
    if sample.split == Sample.Split.TEST:
        return "test"  # annotators of the held-out split must not be anchored by the model
    return "load" if served is not None else "no-model"


def _sample_in(project: Project, sample_id: object) -> Sample:
    sample = Sample.objects.filter(pk=sample_id, project=project).select_related("project").first()
    if sample is None:
        raise SampleNotFound("that sample is not part of this project")
    return sample


@project_page(methods=("GET", "POST"))
def label(request: HttpRequest, project: Project) -> HttpResponse:
    error = None
    if request.method == "POST":
        form = LabelForm(request.POST, project=project)
        if form.is_valid():
            try:
                label_submit(
                    sample=_sample_in(project, form.cleaned_data["sample"]),
                    annotator=request.user,
                    value=form.cleaned_data["value"],
                    duration_ms=form.cleaned_data["duration_ms"],
                    suggested_version=form.cleaned_data["suggested_version"],
                )
            except DomainError as exc:
                error = exc.message
        else:
            error = "; ".join(m for messages in form.errors.values() for m in messages)
    return _card(request, project, error=error)


@project_page(methods=("POST",))
def label_skip(request: HttpRequest, project: Project) -> HttpResponse:
    error = None
    try:
        sample_skip(sample=_sample_in(project, request.POST.get("sample")), annotator=request.user)
    except (DomainError, ValueError) as exc:
        error = getattr(exc, "message", "that sample is not part of this project")
    return _card(request, project, error=error)


@project_page(methods=("POST",))
def label_undo(request: HttpRequest, project: Project) -> HttpResponse:
    error = None
    try:
        label_undo_last(project=project, annotator=request.user)
    except DomainError as exc:
        error = exc.message
    return _card(request, project, error=error)


@project_page(methods=("GET",))
def sample_suggestion(request: HttpRequest, project: Project, sample_id: int) -> HttpResponse:
    """The served model's guess for one sample, loaded by the card after it is shown."""
    sample = Sample.objects.filter(pk=sample_id, project=project).first()
    if sample is None:
        raise Http404("no such sample")
    suggestion = None
    if _hint(project, sample, True) == "load":
        suggestion = hooks.suggestions(project=project, samples=[sample]).get(sample.pk)
    return render(request, "annotation/label.html#suggestion",
                  {"project": project, "sample": sample, "suggestion": suggestion})


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def review(request: HttpRequest, project: Project) -> HttpResponse:
    form = ReviewFilterForm(request.GET or None, project=project)
    filters = form.filters() if form.is_valid() else {}
    page = review_page(project=project, user=request.user,
                       before=_int_or_none(request.GET.get("before")),
                       start=_int_or_none(request.GET.get("start")) or 0, **filters)
    query = request.GET.copy()
    query.pop("before", None)
    query.pop("start", None)
    context = {"project": project, "form": form, "page": page, "query": query.urlencode(),
               "label_values": project.labels, "served": hooks.served_model(project=project)}
    template = "annotation/review.html#review-rows" if request.htmx else "annotation/review.html"
    return render(request, template, context)


@project_page(methods=("POST",), roles=SCIENCE_ROLES)
def review_correct(request: HttpRequest, project: Project, sample_id: int) -> HttpResponse:
    error = None
    try:
        sample = _sample_in(project, sample_id)
        label_correct(sample=sample, scientist=request.user, value=request.POST.get("value", ""))
    except SampleNotFound:
        raise Http404("no such sample")
    except DomainError as exc:
        error = exc.message
    row = review_rows_for(project=project, samples=[sample])[0]
    return render(request, "annotation/review.html#review-row",
                  {"project": project, "row": row, "error": error,
                   "label_values": project.labels}, status=400 if error else 200)


@project_page(methods=("GET", "POST"), roles=SCIENCE_ROLES)
def project_settings(request: HttpRequest, project: Project) -> HttpResponse:
    form = ProjectSettingsForm(request.POST or None, project=project)
    saved = False
    if request.method == "POST" and form.is_valid():
        try:
            project_settings_update(project=project, user=request.user, **form.cleaned_data)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            saved = True
    status = 400 if form.errors else 200
    return render(request, "annotation/project_settings.html",
                  {"project": project, "form": form, "saved": saved,
                   "history": project_settings_history(project=project)}, status=status)


@project_page(methods=("GET",))
def sample_image(request: HttpRequest, project: Project, sample_id: int) -> FileResponse:
    sample = Sample.objects.filter(pk=sample_id, project=project).exclude(image="").first()
    if sample is None:
        raise Http404("no such image")
    response = FileResponse(default_storage.open(sample.image.name, "rb"))
    response["Cache-Control"] = "private, max-age=3600"
    return response
