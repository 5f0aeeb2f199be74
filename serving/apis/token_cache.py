"""Remember successful token checks for a second per process, so hot endpoints skip the query.

``ProjectTokenAuthentication`` stays the view's authenticator and does the real check (one
query, plus a throttled ``last_used_at`` update); a view with :class:`RememberedTokenMixin`
reuses a successful result for ``API_TOKEN_CACHE_SECONDS`` (default 1 s), keyed by the
Authorization header. So a revoked or changed token stops working everywhere within that
time, and a failed check is never remembered (a bad key always costs its query and gets
its 401).
"""
from __future__ import annotations

import threading
import time

from django.conf import settings
from rest_framework.authentication import get_authorization_header

from serving.models import ApiToken

MAX_ENTRIES = 10_000

_remembered: dict[bytes, tuple[float, object, ApiToken]] = {}
_lock = threading.Lock()


class RememberedTokenMixin:
    def perform_authentication(self, request) -> None:
        ttl = float(getattr(settings, "API_TOKEN_CACHE_SECONDS", 1.0))
        header = get_authorization_header(request) if ttl > 0 else b""
        hit = _remembered.get(header) if header else None
        now = time.monotonic()
        if hit is not None and now - hit[0] < ttl:
            request._authenticator = request.authenticators[0]
            request.user, request.auth = hit[1], hit[2]
            return
        super().perform_authentication(request)
        if header and isinstance(request.auth, ApiToken):
            with _lock:
                if len(_remembered) >= MAX_ENTRIES:
                    _remembered.clear()
                _remembered[header] = (now, request.user, request.auth)


def forget() -> None:
    """Drop every remembered token (tests)."""
    with _lock:
        _remembered.clear()
