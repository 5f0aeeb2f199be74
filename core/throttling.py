"""Rate limits: per API token by the view's ``throttle_scope``, and failures per client address.

Both count in the default cache with the same sliding-window estimate (see
:class:`TokenScopedRateThrottle`), so both are shared by every process once ``CACHES``
points at Redis or memcached.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

from django.conf import settings
from django.core.cache import cache as default_cache
from rest_framework.throttling import ScopedRateThrottle


def client_address(request_or_meta) -> str | None:
    """The client's IP address: ``REMOTE_ADDR``, or behind ``TRUSTED_PROXY_COUNT`` proxies
    the address the outermost of them saw, read from ``X-Forwarded-For`` (a client can put
    anything in that header, so only the entries our own proxies appended are believed).

    Takes a request or a WSGI environ / ``request.META``; the login lockout (django-axes),
    the API-key failure limit and DRF's throttles (``NUM_PROXIES``) all use this answer.
    """
    meta = request_or_meta if isinstance(request_or_meta, Mapping) else request_or_meta.META
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = meta.get("HTTP_X_FORWARDED_FOR") if proxies else None
    if not forwarded:
        return meta.get("REMOTE_ADDR")
    addresses = forwarded.split(",")
    return addresses[-min(proxies, len(addresses))].strip()


def _sliding_estimate(current: float, previous: float, elapsed: float, duration: float) -> float:
    """Events in the sliding window ending ``elapsed`` s into the current fixed window."""
    if elapsed >= duration:  # the current window has become the previous one
        overlap = max(0.0, 1.0 - (elapsed - duration) / duration)
        return current * overlap
    return previous * (1.0 - elapsed / duration) + current


def _sliding_wait(current: float, previous: float, elapsed: float, limit: int,
                  duration: float) -> float:
    """Seconds until the sliding-window estimate drops below ``limit``."""
    if previous and current < limit:
        wait = duration * (1.0 - (limit - current) / previous) - elapsed
    else:
        wait = (duration - elapsed) + duration * (1.0 - limit / max(current, limit))
    return max(1.0, wait)


def _count(cache, key: str, duration: float, seen: bool = False) -> None:
    """Add one to the fixed-window counter ``key`` (kept for two windows); ``seen``: the
    caller just read it, so it most likely exists and one ``incr`` does."""
    if seen:
        try:
            cache.incr(key)
            return
        except ValueError:  # expired since it was read
            pass
    if not cache.add(key, 1, timeout=2 * duration + 1):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=2 * duration + 1)


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
        _count(self.cache, current_key, self.duration, seen=bool(self.current))
        return True

    def _estimate(self, later: float) -> float:
        """Requests in the sliding window ``later`` seconds from now, if none are added."""
        return _sliding_estimate(self.current, self.previous, self.elapsed + later, self.duration)

    def wait(self) -> float:
        """Seconds until the sliding-window estimate drops below the limit."""
        return _sliding_wait(self.current, self.previous, self.elapsed, self.num_requests,
                             self.duration)


class FailureLimit:
    """At most ``limit()`` (> 0) failures per client address in any sliding minute.

    ``check`` reads the counters (and any extra keys the caller wants in the same cache
    round trip) and says how long the address must wait, if it is over the limit; ``fail``
    counts one failure. Successes are not counted.
    """

    duration = 60.0

    def __init__(self, prefix: str, limit) -> None:
        self.prefix, self.limit = prefix, limit  # limit: a callable, read per check

    def _keys(self, address: str, now: float) -> tuple[str, str, float]:
        window = int(now // self.duration)
        base = f"{self.prefix}:{address}"
        return f"{base}:{window}", f"{base}:{window - 1}", now - window * self.duration

    def check(self, address: str, *extra_keys: str) -> tuple[float | None, dict]:
        """(seconds to wait or None when under the limit, the values of ``extra_keys``)."""
        limit = self.limit()
        current_key, previous_key, elapsed = self._keys(address, time.time())
        found = default_cache.get_many([current_key, previous_key, *extra_keys])
        current, previous = found.pop(current_key, 0), found.pop(previous_key, 0)
        if _sliding_estimate(current, previous, elapsed, self.duration) < limit:
            return None, found
        return _sliding_wait(current, previous, elapsed, limit, self.duration), found

    def fail(self, address: str) -> None:
        current_key, _previous, _elapsed = self._keys(address, time.time())
        _count(default_cache, current_key, self.duration)
