"""OpenAPI building blocks shared by the API views: error responses and their examples."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

from core.serializers import ErrorSerializer


def error_responses(*status_codes: int) -> dict[int, type[ErrorSerializer]]:
    """Document each status code as an ``{"error", "detail"}`` body."""
    return {code: ErrorSerializer for code in status_codes}


def error_examples(by_status: dict[str, tuple[str, str, object]]) -> list[OpenApiExample]:
    """Return one response example per status: ``{"404": (name, error, detail)}``."""
    return [
        OpenApiExample(name, response_only=True, status_codes=[status],
                       value={"error": error, "detail": detail})
        for status, (name, error, detail) in by_status.items()
    ]
