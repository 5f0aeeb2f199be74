"""What the WSGI fast paths (labeling, predict) share: answering a DRF view's ordinary
request in front of Django's request handling, with Django's own checks and headers.

Each fast path hands the request to Django unchanged whenever anything is out of the
ordinary; these helpers give it the checks Django's middleware would have made (hosts,
scheme), the headers the view's answers carry, and the database hygiene of Django's
request signals.
"""
from __future__ import annotations

import re
from http.client import responses

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import get_resolver
from django.utils.module_loading import import_string
from rest_framework.parsers import JSONParser

from core.request_limits import body_over_limit

# Django's middleware that add headers to every response (the rest add none to API answers).
HEADER_MIDDLEWARE = (SecurityMiddleware, XFrameOptionsMiddleware)
STATUS_LINES = {status: f"{status} {phrase}" for status, phrase in responses.items()}


class EnvironRequest(HttpRequest):
    """Enough of a request over the WSGI environ for Django's own host and scheme checks
    (``ALLOWED_HOSTS``, ``SECURE_PROXY_SSL_HEADER``), without building a ``WSGIRequest``.
    Like ``WSGIRequest`` it skips ``HttpRequest.__init__`` (its query dictionaries cost
    more than both checks); those checks read only ``META`` and settings."""

    def __init__(self, environ) -> None:
        self.META = environ
        self.path = self.path_info = environ.get("PATH_INFO", "")

    def _get_scheme(self) -> str:
        return self.META.get("wsgi.url_scheme", "http")


def response_headers(view) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The headers of the view's JSON answer over http and over https, but Content-Length:
    its renderer's Content-Type, DRF's own (``Allow``) and what Django's header-adding
    middleware in ``MIDDLEWARE`` make of a response (security headers, HSTS on https)."""
    renderer = view.renderer_classes[0]
    content_type = renderer.media_type + (f"; charset={renderer.charset}" if renderer.charset else "")
    instance = view()
    instance.setup(HttpRequest())  # as ``as_view`` does: HEAD follows GET
    middleware = [cls(lambda request: None) for cls in map(import_string, settings.MIDDLEWARE)
                  if issubclass(cls, HEADER_MIDDLEWARE)]
    answers = []
    for scheme in ("http", "https"):
        request = EnvironRequest({"wsgi.url_scheme": scheme})
        response = HttpResponse(content_type=content_type)
        for key, value in instance.default_response_headers.items():
            response[key] = value
        for handler in reversed(middleware):  # responses pass the middleware bottom up
            response = handler.process_response(request, response)
        answers.append(tuple(response.items()))
    return answers[0], answers[1]


def json_media_types(view) -> frozenset[str]:
    """The media types the view's JSON parsers take."""
    return frozenset(p.media_type for p in view.parser_classes if issubclass(p, JSONParser))


def close_old_connections() -> None:
    """What Django's request signals do for the database before and after each request:
    close a connection that broke or outlived CONN_MAX_AGE (sending the signals costs more,
    with their other receivers). A connection inside a transaction is left alone, as in
    tests, where a test's transaction spans the request."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def host_allowed(request: EnvironRequest) -> bool:
    """Django's ALLOWED_HOSTS check, which its middleware would make on this request."""
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


def json_body(environ, json_types: frozenset[str]) -> bytes | None:
    """The body when the view would parse it as JSON within the API's size limit."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0 or body_over_limit(length) is not None:
        return None  # the view answers: 400 for no body, 413 over the limit
    if environ.get("CONTENT_TYPE", "").partition(";")[0].strip() not in json_types:
        return None
    return environ["wsgi.input"].read(length)


def view_patterns(view) -> list[re.Pattern[str]]:
    """The URL resolver's compiled patterns (those ``reverse()`` uses) of every route to
    ``view`` that has a ``slug`` group, matching ``PATH_INFO``; none when it is routed nowhere."""
    resolver = get_resolver()
    found = []
    for callback in list(resolver.reverse_dict):
        if getattr(callback, "view_class", None) is not view:
            continue
        for _bits, pattern, _defaults, _converters in resolver.reverse_dict.getlist(callback):
            compiled = re.compile("/" + pattern)
            if "slug" in compiled.groupindex:
                found.append(compiled)
    return found
