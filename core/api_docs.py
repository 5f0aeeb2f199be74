"""OpenAPI building blocks shared by the API views: error responses and their examples."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

from core.errors import ERROR_CODES, error_body
from core.serializers import ErrorSerializer

# Examples of the errors every API answers alike: (name, code, error, detail).
THROTTLED = ("Throttled", "throttled", "too many requests for this token; retry in 3 s",
             {"retry_after": 3})
TOO_LARGE = ("Too large", "too_large",
             "request body of 31457280 bytes is over the limit of 10485760 bytes",
             {"content_length": 31457280, "max_body_bytes": 10485760})


def error_responses(*status_codes: int) -> dict[int, type[ErrorSerializer]]:
    """Document each status code as an ``{"error", "code", "detail"}`` body."""
    return {code: ErrorSerializer for code in status_codes}


def error_examples(by_status: dict[str, tuple[str, str, str, object]]) -> list[OpenApiExample]:
    """Return one response example per status: ``{"404": (name, code, error, detail)}``."""
    examples = []
    for status, (name, code, error, detail) in by_status.items():
        if code not in ERROR_CODES:
            raise ValueError(f"example {name!r}: {code!r} is not one of core.errors.ERROR_CODES")
        examples.append(OpenApiExample(name, response_only=True, status_codes=[status],
                                       value=error_body(error, code, detail)))
    return examples
