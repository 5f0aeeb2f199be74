"""The project page: iterations, the learning curve, progress, and the retrain button."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotation.models import Project
from annotation.access import SCIENCE_ROLES
from annotation.page_access import project_page
from annotation.selectors import project_progress, project_role
from learning.curves import learning_curve
from learning.selectors import (
    alert_list,
    model_version_list,
    model_version_served,
    ranking_staleness,
    retrain_batch_start,
    retrain_cycle_notes,
    strategy_mix_summary,
)
from learning.services import model_version_request_by


@project_page(methods=("GET",))
def project_detail(request: HttpRequest, project: Project) -> HttpResponse:
    if project_role(project=project, user=request.user) not in SCIENCE_ROLES:
        return redirect("label", project.slug)  # annotators only ever see the labeling page
    template = "annotation/project_detail.html"
    if request.htmx:
        template += "#iterations"
    return render(request, template, _detail_context(project))


def _detail_context(project: Project, **extra) -> dict:
    return {
        "project": project,
        "versions": model_version_list(project=project),
        "served": model_version_served(project=project),
        "progress": project_progress(project=project,
                                     requested_at_label_count=retrain_batch_start(project=project)),
        "staleness": ranking_staleness(project=project),
        "curve": learning_curve(project=project),
        "cycle_notes": retrain_cycle_notes(project=project),
        "alerts": alert_list(project=project),
        "strategy_mix": strategy_mix_summary(project=project),
        **extra,
    }


@project_page(methods=("POST",), roles=SCIENCE_ROLES)
def project_retrain(request: HttpRequest, project: Project) -> HttpResponse:
    """Queue a retrain now (owners and scientists); htmx gets the iterations partial back."""
    version = model_version_request_by(project=project, user=request.user)
    if not request.htmx:
        return redirect("project-detail", project.slug)
    return render(request, "annotation/project_detail.html#iterations",
                  _detail_context(project, retrain_queued=version.number))
