"""One JSON error shape for the whole API: ``{"error": "...", "code": "...", "detail": ...}``."""
from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler, set_rollback

from core.errors import ERROR_CODES, DomainError, error_body

logger = logging.getLogger(__name__)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request body too large"
    default_code = "too_large"

    def __init__(self, detail=None, *, limits: dict | None = None) -> None:
        super().__init__(detail)
        self.limits = limits


# The code of an exception that names none of ERROR_CODES (Django's Http404 and
# PermissionDenied, an APIException of another library), by its status.
_CODES_BY_STATUS = {
    400: "invalid", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 413: "too_large",
    415: "unsupported_media_type", 429: "throttled",
}


def api_error_code(exc: Exception, status_code: int) -> str:
    """The stable code of an exception answered with ``status_code``.

    DRF's exceptions name their kind in their class's ``default_code`` (``not_authenticated``,
    ``parse_error``, ``throttled`` ...), which is the code when it is one of ``ERROR_CODES``;
    a code given to one instance (``get_codes()``, a validation's per-field codes) is not, so
    the code stays one per kind of failure.
    """
    code = getattr(type(exc), "default_code", None)
    if code in ERROR_CODES:
        return code
    return _CODES_BY_STATUS.get(status_code, "server_error" if status_code >= 500 else "invalid")


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
    """Render every exception of an API view as ``{"error", "code", "detail"}``.

    DRF and domain exceptions keep their 4xx status. Anything else is logged with its
    traceback and becomes a JSON 500 that reveals nothing about the failure: a last resort,
    since every failure a client can cause should be a named 4xx.
    """
    if isinstance(exc, DomainError):
        return Response(exc.body(), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(str(exc))
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(f"bad request: {exc}")
    response = exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.error("unhandled error in %s", type(view).__name__, exc_info=exc)
        set_rollback()
        return Response(error_body("internal server error", "server_error"),
                        status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    code = api_error_code(exc, response.status_code)
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(_first_message(exc.detail), code, exc.detail)
    elif isinstance(exc, exceptions.Throttled):
        wait = exc.wait or 1
        response["Retry-After"] = str(wait)
        # A throttle with a reason of its own (e.g. API-key guessing) says it; the rest count
        # a token's requests.
        reason = type(exc).default_detail
        if reason == exceptions.Throttled.default_detail:
            reason = "too many requests for this token"
        response.data = error_body(f"{reason}; retry in {wait} s", code, {"retry_after": wait})
    elif isinstance(exc, RequestTooLarge):
        response.data = error_body(str(exc.detail), code, exc.limits)
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = error_body(str(detail), code)
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = "Token"
    return response
