"""One JSON error shape for the whole API: ``{"error": "...", "detail": ...}``."""
from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler, set_rollback

from core.errors import DomainError

logger = logging.getLogger(__name__)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request body too large"
    default_code = "too_large"

    def __init__(self, detail=None, *, limits: dict | None = None) -> None:
        super().__init__(detail)
        self.limits = limits


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                return _first_message(value)
            return f"{key}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def api_exception_handler(exc, context):
    """Render every exception of an API view as ``{"error", "detail"}``.

    DRF and domain exceptions keep their 4xx status. Anything else is logged with its
    traceback and becomes a JSON 500 that reveals nothing about the failure: a last resort,
    since every failure a client can cause should be a named 4xx.
    """
    if isinstance(exc, DomainError):
        return Response({"error": exc.message, "detail": exc.detail}, status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(str(exc))
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(f"bad request: {exc}")
    response = exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.error("unhandled error in %s", type(view).__name__, exc_info=exc)
        set_rollback()
        return Response({"error": "internal server error", "detail": None},
                        status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"error": _first_message(exc.detail), "detail": exc.detail}
    elif isinstance(exc, exceptions.Throttled):
        wait = exc.wait or 1
        response["Retry-After"] = str(wait)
        response.data = {"error": f"too many requests for this token; retry in {wait} s",
                         "detail": {"retry_after": wait}}
    elif isinstance(exc, RequestTooLarge):
        response.data = {"error": str(exc.detail), "detail": exc.limits}
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = {"error": str(detail), "detail": None}
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = "Token"
    return response

