"""Remember successful token checks for a second per process, so hot endpoints skip the query.

``ProjectTokenAuthentication`` stays the view's authenticator and does the real check (one
query, plus a throttled ``last_used_at`` update); a view with :class:`RememberedTokenMixin`
reuses a successful result for ``API_TOKEN_CACHE_SECONDS`` (default 1 s), keyed by the
Authorization header. So a revoked or changed token stops working everywhere within that
time, and a failed check is never remembered (a bad key always costs its query and gets
its 401). The labeling fast path keeps its checks (token and role) in a
:class:`RememberedChecks` of its own, under the same window.
"""
from __future__ import annotations

import threading
import time

from django.conf import settings
from rest_framework.authentication import get_authorization_header

MAX_ENTRIES = 10_000


class RememberedChecks:
    """Successful checks keyed by Authorization header, trusted for ``API_TOKEN_CACHE_SECONDS``
    (0 remembers nothing), at most ``MAX_ENTRIES`` per process."""

    def __init__(self) -> None:
        self._entries: dict[object, tuple[float, object]] = {}
        self._lock = threading.Lock()
        _all.append(self)

    @staticmethod
    def _ttl() -> float:
        return float(getattr(settings, "API_TOKEN_CACHE_SECONDS", 1.0))

    def get(self, header):
        """The value remembered for ``header`` within the window, else None."""
        ttl = self._ttl()
        hit = self._entries.get(header) if ttl > 0 and header else None
        if hit is None or time.monotonic() - hit[0] >= ttl:
            return None
        return hit[1]

    def put(self, header, value) -> None:
        if self._ttl() <= 0 or not header:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[header] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_all: list[RememberedChecks] = []
_tokens = RememberedChecks()


class RememberedTokenMixin:
    def perform_authentication(self, request) -> None:
        header = get_authorization_header(request)
        hit = _tokens.get(header)
        if hit is not None:
            request._authenticator = request.authenticators[0]
            request.user, request.auth = hit
            return
        super().perform_authentication(request)
        if request.auth is not None:  # a token authenticated; sessions carry no auth
            _tokens.put(header, (request.user, request.auth))


def forget() -> None:
    """Drop every remembered check, of every kind (tests)."""
    for checks in _all:
        checks.clear()


def remembered_token(header: bytes):
    """``(user, token)`` of a successful check of this Authorization header that this
    process remembers (see :class:`RememberedTokenMixin`), else None."""
    return _tokens.get(header)
