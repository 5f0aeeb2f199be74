"""Rate limits per API token, by the view's ``throttle_scope``."""
from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle


class TokenScopedRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` keyed by token rather than user, with rates read per request.

    Rates come from ``API_THROTTLE_RATES`` (``{"predict": "6000/min", ...}``), read at call
    time so settings overrides apply. Counters live in the default cache: per process with
    the local-memory cache, shared when ``CACHES`` points at Redis or memcached.

    DRF's throttle keeps a list of every request time in the window and rewrites it on each
    request: O(rate) work, milliseconds at thousands per minute. This one counts requests
    in fixed windows and weighs the previous window by how much of it still overlaps the
    sliding one (the estimate nginx and Cloudflare use): a few O(1) cache operations.
    """

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str | None:
        token = getattr(request, "auth", None)  # the API token, when one authenticated
        ident = f"token-{token.pk}" if token is not None else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.elapsed = self.now - window * self.duration
        current_key, previous_key = f"{self.key}:{window}", f"{self.key}:{window - 1}"
        counts = self.cache.get_many([current_key, previous_key])
        self.current = counts.get(current_key, 0)
        self.previous = counts.get(previous_key, 0)
        if self._estimate(0.0) >= self.num_requests:
            return False
        if not self.cache.add(current_key, 1, timeout=2 * self.duration + 1):
            try:
                self.cache.incr(current_key)
            except ValueError:  # expired between add and incr
                self.cache.add(current_key, 1, timeout=2 * self.duration + 1)
        return True

    def _estimate(self, later: float) -> float:
        """Requests in the sliding window ``later`` seconds from now, if none are added."""
        elapsed = self.elapsed + later
        if elapsed >= self.duration:  # the current window has become the previous one
            overlap = max(0.0, 1.0 - (elapsed - self.duration) / self.duration)
            return self.current * overlap
        return self.previous * (1.0 - elapsed / self.duration) + self.current

    def wait(self) -> float:
        """Seconds until the sliding-window estimate drops below the limit."""
        n, d = self.num_requests, self.duration
        if self.previous and self.current < n:
            wait = d * (1.0 - (n - self.current) / self.previous) - self.elapsed
        else:
            wait = (d - self.elapsed) + d * (1.0 - n / max(self.current, n))
        return max(1.0, wait)
