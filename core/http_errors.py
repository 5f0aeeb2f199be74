"""Django's own 404 and 500 answers: JSON under ``/api/``, the HTML pages everywhere else.

A path under ``/api/`` that matches no route never reaches DRF, so without these handlers
it would get Django's HTML page although every API answer is JSON.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from core.errors import error_body

API_PREFIX = "/api/"


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body(f"no API route {request.path!r}", "not_found",
                                       {"path": request.path}), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("internal server error", "server_error"), status=500)
    return defaults.server_error(request)
