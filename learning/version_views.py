"""The version page (owners and scientists): metrics, the confusion matrix as a heat map,
comparison with another version, Promote / Roll back, and the exact training set."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render

from annotation.access import SCIENCE_ROLES
from annotation.exports import CONTENT_TYPES, export_chunks
from annotation.models import Project
from annotation.page_access import project_page
from learning.models import ModelVersion
from learning.services.comparison import CHANGED_SHOWN, version_compare
from learning.services.promotion import model_version_serve_by
from learning.services.training import TrainingError
from learning.version_selectors import (
    TRAINING_SET_FIELDS,
    TRAINING_SET_SPLITS,
    TrainingSetUnavailable,
    confusion_heatmap,
    per_class_rows,
    rollback_target,
    training_set_label_ids,
    training_set_rows,
    version_get,
    versions_ready,
)


def _version_or_404(project: Project, number: int) -> ModelVersion:
    version = version_get(project=project, number=number)
    if version is None:
        raise Http404(f"this project has no model version {number}")
    return version


def _compare_with(project: Project, version: ModelVersion, raw: str | None):
    """(comparison, error) for ``?with=<n>``; an unusable value is a visible error."""
    if not raw:
        return None, ""
    if not raw.isdigit():
        return None, f"compare with: {raw[:20]!r} is not a version number"
    other = version_get(project=project, number=int(raw))
    if other is None or other.status != ModelVersion.Status.READY:
        return None, f"compare with: this project has no ready version {int(raw)}"
    if version.status != ModelVersion.Status.READY:
        return None, f"v{version.number} is {version.status}: only ready versions compare"
    return version_compare(project=project, a=version, b=other), ""


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def version_detail(request: HttpRequest, project: Project, number: int) -> HttpResponse:
    version = _version_or_404(project, number)
    comparison, compare_error = _compare_with(project, version, request.GET.get("with"))
    return _render(request, project, version, comparison=comparison, error=compare_error,
                   status=400 if compare_error else 200)


def _render(request, project, version, *, comparison=None, error="", status=200):
    ready = versions_ready(project=project)
    served = next((v for v in ready if v.is_served), None)
    return render(request, "learning/version_detail.html", {
        "project": project, "version": version, "served": served,
        "rollback": rollback_target(project=project) if version.is_served else None,
        "per_class": per_class_rows(version.metrics),
        "heatmap": confusion_heatmap(version.metrics),
        "others": [v for v in ready if v.pk != version.pk],
        "comparison": comparison, "changed_shown": CHANGED_SHOWN, "error": error,
        "splits": list(TRAINING_SET_SPLITS),
    }, status=status)


@project_page(methods=("POST",), roles=SCIENCE_ROLES)
def version_serve(request: HttpRequest, project: Project, number: int) -> HttpResponse:
    """Serve version ``number`` (Promote, or Roll back to it). The POST is the confirmation;
    ``served`` is the version the page showed as served, so a stale page changes nothing."""
    version = _version_or_404(project, number)
    raw = request.POST.get("served", "")
    if not raw.isdigit():
        return _render(request, project, version, status=400,
                       error="the form is missing the version it saw served; reload the page")
    rollback = request.POST.get("action") == "rollback"
    try:
        previous = model_version_serve_by(version=version, user=request.user, rollback=rollback,
                                          expected_served=int(raw))
    except TrainingError as exc:
        return _render(request, project, version, error=exc.message, status=409)
    was = f"v{previous.number}" if previous else "no model"
    messages.success(request, f"{'Rolled back' if rollback else 'Promoted'}: v{version.number} "
                              f"is served now (was {was}).")
    return redirect("version-detail", project.slug, version.number)


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def version_training_set(request: HttpRequest, project: Project, number: int,
                         fmt: str) -> HttpResponse:
    """Stream the labels version ``number`` was trained on (``?split=test|all`` for the test
    labels it was measured on, or both), as they were then, checked against its sha256."""
    version = _version_or_404(project, number)
    split = request.GET.get("split", "pool")
    if split not in TRAINING_SET_SPLITS:
        return _render(request, project, version, status=400,
                       error=f"split must be one of {', '.join(TRAINING_SET_SPLITS)}")
    try:
        ids = training_set_label_ids(version=version)
    except TrainingSetUnavailable as exc:
        return _render(request, project, version, error=str(exc), status=409)
    response = StreamingHttpResponse(
        export_chunks(training_set_rows(ids=ids, split=split), TRAINING_SET_FIELDS, fmt),
        content_type=CONTENT_TYPES[fmt])
    name = f"{project.slug}-v{version.number}-{'training' if split == 'pool' else split}-set.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    response["X-Label-Snapshot-Sha256"] = version.label_snapshot_sha256
    return response
