"""The labeling monitor page: per annotator pace, time, skips and agreement (owners, scientists)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotation.access import SCIENCE_ROLES
from annotation.annotator_stats import (
    DEFAULT_WINDOW,
    WINDOW_NAMES,
    WINDOWS,
    annotator_stats,
)
from annotation.models import Project
from annotation.page_access import project_page


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def annotators(request: HttpRequest, project: Project) -> HttpResponse:
    """Tables only, so the page reads the same without JavaScript; ``?window=`` picks the
    window (24h, 7d, 30d, all); an unknown one shows the default with a 400."""
    window = request.GET.get("window") or DEFAULT_WINDOW
    error, status = None, 200
    if window not in WINDOWS:
        error = f"unknown window {window!r}: showing the last {WINDOW_NAMES[DEFAULT_WINDOW]}"
        window, status = DEFAULT_WINDOW, 400
    stats = annotator_stats(project=project, user=request.user, window=window)
    context = {"project": project, "stats": stats, "error": error,
               "windows": list(WINDOW_NAMES.items())}
    return render(request, "annotation/annotators.html", context, status=status)
