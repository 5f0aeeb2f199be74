"""Rate limits per API token, by the view's ``throttle_scope``."""
from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle

from serving.models import ApiToken


class TokenScopedRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` keyed by token rather than user, with rates read per request.

    Rates come from ``API_THROTTLE_RATES`` (``{"predict": "6000/min", ...}``), read at call
    time so settings overrides apply. Counters live in the default cache: per process with
    the local-memory cache, shared when ``CACHES`` points at Redis or memcached.
    """

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str | None:
        token = getattr(request, "auth", None)
        ident = f"token-{token.pk}" if isinstance(token, ApiToken) else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
