"""Authenticate API requests by token: ``Authorization: Token <key>``.

A project token acts as a client (``TokenUser``) within its scopes; a personal token (one
with a ``user``) acts as that person, with their role in the token's project.

Key guessing is limited per client address: past ``API_AUTH_FAILURES_PER_MIN`` failed
checks in a sliding minute, the address gets 429 with Retry-After instead of a check, so it
can neither keep guessing nor tell a right guess from a wrong one. Successful checks are not
counted, and a key that already worked from that address within ``KNOWN_KEY_SECONDS`` is
still checked, so one client looping on a revoked key does not lock out the working clients
behind the same address. A key never seen working there waits out the minute.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from annotation.models import ApiToken
from core.throttling import FailureLimit, client_address

logger = logging.getLogger(__name__)

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
KNOWN_KEY_SECONDS = 3600
_failures = FailureLimit("apikey-failures", lambda: settings.API_AUTH_FAILURES_PER_MIN)
# Addresses this process refused for guessing, until when (time.monotonic): the WSGI gate
# below keeps them off the labeling fast path, which checks keys without an address.
_refused_here: dict[str, float] = {}
_REFUSED_MAX = 10_000


class KeyGuessingThrottled(exceptions.Throttled):
    default_detail = "too many failed API key checks from this address"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class TokenUser:
    """The identity behind a token: anonymous as a person, authenticated as a client."""

    is_authenticated = True
    is_anonymous = False
    is_superuser = False
    is_staff = False
    pk = None

    def __init__(self, token: ApiToken) -> None:
        self.token = token

    def __str__(self) -> str:
        return f"token {self.token.key_prefix}"


class ProjectTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[TokenUser | object, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        # The labeling fast path checks a key with no request (no address) and hands any
        # failure to DRF, which counts it here.
        meta = getattr(request, "META", None)
        address = client_address(meta) if meta is not None else None
        if address is None or settings.API_AUTH_FAILURES_PER_MIN <= 0:
            return self._check(header)
        known = f"apikey-known:{address}:{key_hash(header[-1].decode('latin-1'))}"
        wait, seen = _failures.check(address, known)
        if wait is not None and known not in seen:
            _refused_remember(address, wait)
            raise KeyGuessingThrottled(wait=math.ceil(wait))
        try:
            found = self._check(header)
        except exceptions.AuthenticationFailed:
            _failures.fail(address)
            if known in seen:
                cache.delete(known)
            raise
        if known not in seen:
            cache.set(known, 1, timeout=KNOWN_KEY_SECONDS)
        return found

    def _check(self, header: list[bytes]) -> tuple[TokenUser | object, ApiToken]:
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header: use 'Token <key>'")
        try:
            key = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("token contains invalid characters")
        tokens = ApiToken.objects.select_related("project", "user").filter(
            key_hash=key_hash(key), revoked_at__isnull=True
        )
        # key_hash is unique: [:1] rather than first(), whose ORDER BY costs CPU to build.
        token = next(iter(tokens[:1]), None)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        if token.user_id is not None and not token.user.is_active:
            raise exceptions.AuthenticationFailed("this token's user is inactive")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            _last_used_record(token.pk, now)
        return (token.user if token.user_id is not None else TokenUser(token)), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def _last_used_record(token_id: int, now) -> None:
    """Note when a token was last used: bookkeeping, which never fails the request it rides
    on (on SQLite a busy writer can refuse it; the next request a minute on tries again)."""
    try:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    except DatabaseError as exc:
        logger.warning("could not record the last use of token %s: %s", token_id, exc)


def _refused_remember(address: str, wait: float) -> None:
    if len(_refused_here) >= _REFUSED_MAX:
        _refused_here.clear()
    _refused_here[address] = time.monotonic() + wait


def refused_here(environ) -> bool:
    """Whether this process lately refused the client of this WSGI request for guessing keys."""
    address = client_address(environ)
    until = _refused_here.get(address)
    if until is None:
        return False
    if time.monotonic() < until:
        return True
    _refused_here.pop(address, None)
    return False


class KeyGuessingGate:
    """WSGI: keep an address refused for guessing keys off the labeling fast path.

    The fast path checks every key itself and answers the right one, so through it a
    refused address could still tell a right guess from a wrong one. Requests from an
    address this process refused go straight to Django, where the limit applies; each
    process learns of a refusal at the first wrong key it hands to Django. Costs nothing
    while no address is refused.
    """

    def __init__(self, fast_path, django_application) -> None:
        self.fast_path, self.django_application = fast_path, django_application

    def __call__(self, environ, start_response):
        if _refused_here and refused_here(environ):
            return self.django_application(environ, start_response)
        return self.fast_path(environ, start_response)
