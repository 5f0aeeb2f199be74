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
everything else). What it shares with them is defined once, on their side: the routes are
the URL resolver's compiled patterns for the two views (``annotation/api_urls.py``); the
input limits are the views' input serializer's fields (``annotation/label_limits.py``) and
``core.request_limits.body_over_limit``; the headers are what DRF and Django's own
security and clickjacking middleware add, and the host and scheme checks are Django's.

It hands the request to Django unchanged, so Django gives the answer, whenever anything is
out of the ordinary: no ``Token`` header, a key that fails, a non-member, a throttled
token, a body that is not exactly what the serializer accepts as it stands (no coercion,
trimming or refusal), HEAD/OPTIONS, or an unexpected error (logged; both requests are
safe to repeat: ``next`` returns a held lease again, and a repeated label is idempotent).
Domain refusals (unknown label 400, sample outside the project 404, leased by someone else
409) are answered here with the API's ``{"error", "code", "detail"}`` body, the same
``DomainError.body()`` the views' exception handler gives.

A successful token check and the caller's membership are remembered per process for
``API_TOKEN_CACHE_SECONDS`` (default 1 s; 0 checks every request), the same window in which
a revoked token keeps working on the other hot endpoints; a role taken away stops working
within it too.
"""
from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from types import SimpleNamespace

import orjson
from django.conf import settings
from django.core import validators as core_validators
from django.urls import get_resolver
from rest_framework import exceptions, serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from core.errors import DomainError
from annotation.errors import NotAMember
from annotation.labeling_apis import LabelSubmitApi, NextSampleApi, label_output, sample_output
from annotation.models import Membership, Sample
from annotation.selectors import membership_get
from annotation.access import LABELING_ROLES, member_require
from annotation.services import label_submit, sample_lease_next
from core.remembered import RememberedChecks
from core.wsgi_shortcuts import (
    STATUS_LINES,
    EnvironRequest,
    close_old_connections,
    host_allowed,
    json_body,
    json_media_types,
    response_headers,
)
from annotation.authentication import ProjectTokenAuthentication
from annotation.models import ApiToken
from core.throttling import TokenScopedRateThrottle

logger = logging.getLogger(__name__)

# The views it stands in front of, and the one method of each it answers.
_HANDLED = {NextSampleApi: "GET", LabelSubmitApi: "POST"}


class _Caller(SimpleNamespace):
    """What a remembered token check yields: the person, their token and membership."""


_callers = RememberedChecks()


@dataclass(frozen=True)
class _Route:
    """Where one of the views is routed, and what its answers carry besides the body."""

    path: re.Pattern[str]  # the URL resolver's compiled pattern, with a ``slug`` group
    view: type
    headers: tuple[tuple[str, str], ...]  # for http, as Django's middleware and DRF add them
    secure_headers: tuple[tuple[str, str], ...]  # for https (HSTS)
    json_types: frozenset[str]  # the media types the view's JSON parser takes


class LabelingFastPath:
    """WSGI middleware: serve ordinary ``next``/``labels`` requests, pass the rest to ``app``.

    Its routes are the URL resolver's, built on the first request: where the root URLconf
    (``annotation/api_urls.py``) routes ``NextSampleApi`` and ``LabelSubmitApi``, with the
    same compiled patterns, so a route moved there moves here too.
    """

    def __init__(self, app) -> None:
        self.app = app
        self._routes: dict[str, tuple[_Route, ...]] | None = None

    def __call__(self, environ, start_response):
        if environ.get("HTTP_AUTHORIZATION", "")[:6].lower() != "token ":
            return self.app(environ, start_response)
        routes = self._routes if self._routes is not None else self._build()
        path, match = environ.get("PATH_INFO", ""), None
        for route in routes.get(environ.get("REQUEST_METHOD"), ()):
            match = route.path.match(path)
            if match is not None:
                break
        if match is None:
            return self.app(environ, start_response)
        request = EnvironRequest(environ)
        secure = request.is_secure()
        if not host_allowed(request) or (settings.SECURE_SSL_REDIRECT and not secure):
            return self.app(environ, start_response)  # Django answers with its 400 or redirect
        body = b""
        if route.view is LabelSubmitApi:
            body = json_body(environ, route.json_types)
            if body is None:
                return self.app(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)  # for Django, should it answer after all
        close_old_connections()
        try:
            answer = self._answer(environ, match["slug"], route.view, body)
        except Exception:
            logger.exception("labeling fast path failed; Django answers instead")
            answer = None
        finally:
            close_old_connections()
        if answer is None:
            if route.view is LabelSubmitApi:
                environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        status, payload = answer
        content = orjson.dumps(payload)
        start_response(STATUS_LINES[status],
                       [*(route.secure_headers if secure else route.headers),
                        ("Content-Length", str(len(content)))])
        return [content]

    def _build(self) -> dict[str, tuple[_Route, ...]]:
        self._routes = _routes()
        return self._routes

    def _answer(self, environ, slug: str, view, body: bytes) -> tuple[int, dict] | None:
        caller = _caller(environ, slug)
        if caller is None or not _throttle_allows(caller.token, view):
            return None
        project, annotator, membership = caller.membership.project, caller.user, caller.membership
        try:
            if view is NextSampleApi:
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
                                 duration_ms=data.get("duration_ms"),
                                 suggested_version=data.get("suggested_version"),
                                 membership=membership)
        except NotAMember:
            return None  # Django answers the 403 with its own wording
        except DomainError as exc:
            return exc.status, exc.body()
        return (201 if label.is_new else 200), label_output(label)


def _routes() -> dict[str, tuple[_Route, ...]]:
    """``{method: routes}`` for the handled views, from the URL resolver's own compiled
    patterns (those ``reverse()`` uses); a view routed nowhere is not handled."""
    resolver = get_resolver()
    routes: dict[str, list[_Route]] = {}
    for callback in list(resolver.reverse_dict):
        view = getattr(callback, "view_class", None)
        if view not in _HANDLED:
            continue
        headers, secure_headers = response_headers(view)
        json_types = json_media_types(view)
        for _bits, pattern, _defaults, _converters in resolver.reverse_dict.getlist(callback):
            compiled = re.compile("/" + pattern)
            if "slug" not in compiled.groupindex:
                logger.warning("labeling fast path: route %r has no slug; Django answers it", pattern)
                continue
            routes.setdefault(_HANDLED[view], []).append(
                _Route(compiled, view, headers, secure_headers, json_types))
    return {method: tuple(found) for method, found in routes.items()}


def _input_checks(serializer_class) -> tuple[dict[str, tuple[type, int | None, int | None, bool]],
                                             frozenset[str]]:
    """``({field: (type, low, high, nullable)}, required fields)``: what
    ``serializer_class`` accepts as it stands, for the fast path to check without DRF.
    ``low``/``high`` bound an integer's value or a string's length, as the field's own
    arguments say; ``nullable``, whether it takes null (``allow_null``: DRF then runs no
    check on it). Raises for a field or validation the fast path cannot make the same way,
    rather than accept a body the view would refuse."""
    serializer = serializer_class()
    if type(serializer).validate is not serializers.Serializer.validate:
        raise TypeError(f"{serializer_class.__name__}.validate: the fast path cannot mirror it")
    known = (core_validators.MaxValueValidator, core_validators.MinValueValidator,
             core_validators.MaxLengthValidator, core_validators.MinLengthValidator,
             core_validators.ProhibitNullCharactersValidator,
             ProhibitSurrogateCharactersValidator)  # those the fields add for their arguments
    checks = {}
    for name, field in serializer.fields.items():
        if type(field) is serializers.IntegerField:
            checks[name] = (int, field.min_value, field.max_value, field.allow_null)
        elif type(field) is serializers.CharField and field.trim_whitespace:
            low = field.min_length if field.min_length is not None else int(not field.allow_blank)
            checks[name] = (str, low, field.max_length, field.allow_null)
        else:
            raise TypeError(f"{serializer_class.__name__}.{name}: the fast path cannot check "
                            f"a {type(field).__name__} as DRF does")
        if hasattr(serializer, f"validate_{name}") or any(
                not isinstance(v, known) for v in field.validators):
            raise TypeError(f"{serializer_class.__name__}.{name}: a validator the fast path "
                            f"cannot mirror")
    return checks, frozenset(name for name, field in serializer.fields.items() if field.required)


_INPUT, _REQUIRED = _input_checks(LabelSubmitApi.InputSerializer)


def _label_input(body: bytes) -> dict | None:
    """The body as ``LabelSubmitApi.InputSerializer`` would accept it, or None to let DRF
    answer (anything it might coerce, trim or refuse)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not _REQUIRED <= data.keys() <= _INPUT.keys():
        return None
    for name, value in data.items():
        kind, low, high, nullable = _INPUT[name]
        if value is None and nullable:
            continue
        if type(value) is not kind:  # not bool for int, nor a number DRF would make a str
            return None
        if kind is str:
            if value != value.strip() or "\x00" in value:
                return None
            size = len(value)
        else:
            size = value
        if (low is not None and size < low) or (high is not None and size > high):
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
