"""Refuse oversized request bodies from their Content-Length, before anything parses them."""
from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.request import Request

from core.api_errors import RequestTooLarge


def body_over_limit(length: int) -> dict | None:
    """The 413's detail when a body of ``length`` bytes is over ``API_MAX_BODY_BYTES``,
    None when it is within the limit. The one place the limit is compared; the labeling
    fast path asks it too, and leaves an oversized body to the views to refuse."""
    limit = settings.API_MAX_BODY_BYTES
    if length > limit:
        return {"content_length": length, "max_body_bytes": limit}
    return None


class BodySizeLimitMixin:
    """Answer 413 when ``Content-Length`` exceeds ``API_MAX_BODY_BYTES``.

    Runs after authentication, permission and throttle checks (so an unknown client learns
    nothing), and before the body is read: DRF parses lazily, on first ``request.data``.
    """

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            raise ParseError(f"invalid Content-Length header {raw!r}")
        over = body_over_limit(length)
        if over is not None:
            raise RequestTooLarge(
                f"request body of {length} bytes is over the limit of "
                f"{over['max_body_bytes']} bytes", limits=over)
