"""The labeling API's two per-label requests, answered in front of Django's request handling.

``GET /api/v1/projects/<slug>/next`` and ``POST /api/v1/projects/<slug>/labels`` with a
personal token are what a labeling tool sends for every label. Through Django's middleware
and DRF's view machinery each costs about 0.6 ms of CPU before any work is done, several
times what the work itself costs once the queue statements are one database call each:
with 32 annotators labeling flat out on two cores that overhead alone queues requests
for ~25 ms (measured with a view that does nothing; ``bench/queue.py``).

This WSGI wrapper answers the ordinary case of those two requests itself, with the same
services, the same token check, throttle and role check, and the same response bodies as
the DRF views (``annotation.labeling_apis``, which still document the endpoints and serve
everything else). It hands the request to Django unchanged, so Django gives the answer,
whenever anything is out of the ordinary: no ``Token`` header, a key that fails, a
non-member, a throttled token, a body that is not exactly ``{"sample": <int>, "value":
"<str>"[, "duration_ms": <int>]}``, HEAD/OPTIONS, or an unexpected error (logged; both
requests are safe to repeat: ``next`` returns a held lease again, and a repeated label is
idempotent). Domain refusals (unknown label 400, sample outside the project 404, leased by
someone else 409) are answered here with the API's ``{"error", "detail"}`` shape.

A successful token check and the caller's membership are remembered per process for
``API_TOKEN_CACHE_SECONDS`` (default 1 s; 0 checks every request), the same window in which
a revoked token keeps working on the other hot endpoints; a role taken away stops working
within it too.
"""
from __future__ import annotations

import io
import logging
import re
from types import SimpleNamespace

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connections
from django.http import HttpRequest
from rest_framework import exceptions

from core.errors import DomainError
from annotation.errors import NotAMember
from annotation.labeling_apis import LabelSubmitApi, NextSampleApi, label_output, sample_output
from annotation.models import Membership, Sample
from annotation.selectors import membership_get
from annotation.access import LABELING_ROLES, member_require
from annotation.services import label_submit, sample_lease_next
from core.remembered import RememberedChecks
from annotation.authentication import ProjectTokenAuthentication
from annotation.models import ApiToken
from core.throttling import TokenScopedRateThrottle

logger = logging.getLogger(__name__)

_PATH = re.compile(r"^/api/v1/projects/(?P<slug>[-a-zA-Z0-9_]+)/(?P<action>next|labels)$")
_LABEL_KEYS = frozenset({"sample", "value", "duration_ms"})
_MAX_DURATION_MS = 86_400_000
_MAX_VALUE_LENGTH = 200
_STATUS_LINES = {200: "200 OK", 201: "201 Created", 400: "400 Bad Request",
                 404: "404 Not Found", 409: "409 Conflict"}


class _Caller(SimpleNamespace):
    """What a remembered token check yields: the person, their token and membership."""


_callers = RememberedChecks()


def _security_headers() -> list[tuple[str, str]]:
    """The headers Django's security and clickjacking middleware add to an API response."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        headers.append(("Referrer-Policy",
                        policy if isinstance(policy, str) else ",".join(policy)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    if getattr(settings, "X_FRAME_OPTIONS", None):
        headers.append(("X-Frame-Options", settings.X_FRAME_OPTIONS))
    return headers


def _hsts() -> str:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value


class LabelingFastPath:
    """WSGI middleware: serve ordinary ``next``/``labels`` requests, pass the rest to ``app``."""

    def __init__(self, app) -> None:
        self.app = app
        self._headers: list[tuple[str, str]] | None = None

    def __call__(self, environ, start_response):
        match = _PATH.match(environ.get("PATH_INFO", ""))
        if match is None or not environ.get("HTTP_AUTHORIZATION", "")[:6].lower() == "token ":
            return self.app(environ, start_response)
        method, action = environ.get("REQUEST_METHOD"), match["action"]
        if (action, method) not in (("next", "GET"), ("labels", "POST")):
            return self.app(environ, start_response)
        if not _host_allowed(environ) or (
                settings.SECURE_SSL_REDIRECT and environ.get("wsgi.url_scheme") != "https"):
            return self.app(environ, start_response)  # Django answers with its 400 or redirect
        body = b""
        if method == "POST":
            body = _read_body(environ)
            if body is None:
                return self.app(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)  # for Django, should it answer after all
        _close_old_connections()
        try:
            answer = self._answer(environ, match["slug"], action, body)
        except Exception:
            logger.exception("labeling fast path failed; Django answers instead")
            answer = None
        finally:
            _close_old_connections()
        if answer is None:
            if method == "POST":
                environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        status, payload = answer
        content = orjson.dumps(payload)
        if self._headers is None:
            self._headers = _security_headers()
        allow = "POST, OPTIONS" if action == "labels" else "GET, HEAD, OPTIONS"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(content))),
                   ("Allow", allow), *self._headers]
        if settings.SECURE_HSTS_SECONDS and environ.get("wsgi.url_scheme") == "https":
            headers.append(("Strict-Transport-Security", _hsts()))
        start_response(_STATUS_LINES[status], headers)
        return [content]

    def _answer(self, environ, slug: str, action: str, body: bytes) -> tuple[int, dict] | None:
        view = NextSampleApi if action == "next" else LabelSubmitApi
        caller = _caller(environ, slug)
        if caller is None or not _throttle_allows(caller.token, view):
            return None
        project, annotator, membership = caller.membership.project, caller.user, caller.membership
        try:
            if action == "next":
                sample = sample_lease_next(project=project, annotator=annotator,
                                           membership=membership)
                if sample is None:
                    return 200, {"sample": None}
                sample.project = project
                return 200, {"sample": sample_output(sample, sample.lease_expires)}
            data = _label_input(body)
            if data is None:
                return None
            label = label_submit(sample=Sample(pk=data["sample"], project=project),
                                 annotator=annotator, value=data["value"],
                                 duration_ms=data.get("duration_ms"), membership=membership)
        except NotAMember:
            return None  # Django answers the 403 with its own wording
        except DomainError as exc:
            if exc.status not in _STATUS_LINES:
                return None
            return exc.status, {"error": exc.message, "detail": exc.detail}
        return (201 if label.is_new else 200), label_output(label)


def _close_old_connections() -> None:
    """What Django's request signals do for the database before and after each request:
    close a connection that broke or outlived CONN_MAX_AGE (sending the signals costs more,
    with their other receivers). A connection inside a transaction is left alone, as in
    tests, where a test's transaction spans the request."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _host_allowed(environ) -> bool:
    """Django's ALLOWED_HOSTS check, which its middleware would make on this request."""
    request = HttpRequest()
    request.META = environ
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


def _read_body(environ) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if length <= 0 or (limit is not None and length > limit):
        return None
    if not environ.get("CONTENT_TYPE", "").startswith("application/json"):
        return None
    return environ["wsgi.input"].read(length)


def _label_input(body: bytes) -> dict | None:
    """The body as ``LabelSubmitApi.InputSerializer`` would accept it, or None to let DRF
    answer (anything it might coerce, trim or refuse)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.keys() <= _LABEL_KEYS:
        return None
    sample, value = data.get("sample"), data.get("value")
    if type(sample) is not int or sample < 1:
        return None
    if type(value) is not str or not 0 < len(value) <= _MAX_VALUE_LENGTH or value != value.strip():
        return None
    if "duration_ms" in data:
        duration = data["duration_ms"]
        if type(duration) is not int or not 0 <= duration <= _MAX_DURATION_MS:
            return None
    return data


def _caller(environ, slug: str) -> _Caller | None:
    """The person behind a personal token of project ``slug``, with their labeling role,
    remembered for ``API_TOKEN_CACHE_SECONDS``; None when any of it does not hold."""
    header = environ["HTTP_AUTHORIZATION"]
    hit = _callers.get(header)
    if hit is not None and hit.membership.project.slug == slug:
        return hit
    try:
        found = ProjectTokenAuthentication().authenticate(SimpleNamespace(headers={"authorization": header}))
    except exceptions.AuthenticationFailed:
        return None
    if found is None:
        return None
    user, token = found
    if not isinstance(token, ApiToken) or token.user_id is None:
        return None
    membership: Membership | None = membership_get(slug=slug, user=user)
    if membership is None or membership.project_id != token.project_id:
        return None
    try:
        member_require(project=membership.project, user=user, roles=LABELING_ROLES,
                       membership=membership)
    except NotAMember:
        return None
    caller = _Caller(user=user, token=token, membership=membership)
    _callers.put(header, caller)
    return caller


def _throttle_allows(token: ApiToken, view) -> bool:
    """The views' throttle, counted the same way (a refusal is left to DRF to answer)."""
    return TokenScopedRateThrottle().allow_request(SimpleNamespace(auth=token), view)
