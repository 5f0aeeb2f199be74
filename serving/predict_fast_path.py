"""The predict API's ordinary request, answered in front of Django's request handling.

``POST /api/v1/projects/<slug>/predict`` with a project token and a JSON body of plain
instances is what a client of the served model sends, request after request. Django's
middleware, URL resolution and DRF's view machinery cost more CPU than a one-row
prediction itself (``bench/serving_profile.py``), so this WSGI wrapper answers that case
with the same services as ``serving.apis.predict.PredictApi``: the same remembered token
check, scope and throttle, the same ``predict`` service, rendering, headers and
prediction log (rows, kept instances, monitoring rollups).

It hands the request to Django unchanged, and Django gives the answer, whenever anything
is out of the ordinary: a token this process has not checked within
``API_TOKEN_CACHE_SECONDS`` (Django checks it, counts failures per address, and
remembers it), a token of another project or without the ``predict`` scope, a throttled
token, a query string (``?version=``), a body that is not JSON within the size limit or
not plain instances (the serializers then give their messages), multipart uploads, a
disallowed host, or an unexpected error (logged; a prediction is safe to repeat). A
refusal of the domain (an invalid instance, no served model) is answered here with the
API's ``{"error", "code", "detail"}`` body and logged as the view logs it.
"""
from __future__ import annotations

import io
import logging
import time
from types import SimpleNamespace

import orjson
from django.conf import settings
from rest_framework import HTTP_HEADER_ENCODING

from core.errors import DomainError
from core.remembered import remembered_token
from core.throttling import TokenScopedRateThrottle
from core import wsgi_shortcuts as shortcuts
from annotation.models import ApiToken
from serving.apis.predict import PredictApi, plain_instances, predict_log, predictions_output
from serving.services import predict

logger = logging.getLogger(__name__)


class PredictFastPath:
    """WSGI middleware: answer ordinary predict requests, pass the rest to ``app``.

    Its routes are the URL resolver's own patterns for ``PredictApi``, found on the first
    request, so a route moved in ``serving/urls.py`` moves here too.
    """

    def __init__(self, app) -> None:
        self.app = app
        self._setup: tuple | None = None

    def _built(self) -> tuple:
        if self._setup is None:
            headers, secure_headers = shortcuts.response_headers(PredictApi)
            self._setup = (shortcuts.view_patterns(PredictApi), headers, secure_headers,
                           shortcuts.json_media_types(PredictApi), PredictApi.renderer_classes[0](),
                           frozenset(PredictApi.required_scopes))
        return self._setup

    def __call__(self, environ, start_response):
        if (environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING")
                or environ.get("HTTP_AUTHORIZATION", "")[:6].lower() != "token "):
            return self.app(environ, start_response)
        patterns, headers, secure_headers, json_types, renderer, scopes = self._built()
        path, match = environ.get("PATH_INFO", ""), None
        for pattern in patterns:
            match = pattern.match(path)
            if match is not None:
                break
        if match is None:
            return self.app(environ, start_response)
        started = time.perf_counter()  # where the view starts its clock: before the checks
        hit = remembered_token(environ["HTTP_AUTHORIZATION"].encode(HTTP_HEADER_ENCODING))
        token = hit[1] if hit is not None else None
        if (not isinstance(token, ApiToken) or token.project.slug != match["slug"]
                or not scopes & set(token.scopes)):
            return self.app(environ, start_response)
        request = shortcuts.EnvironRequest(environ)
        secure = request.is_secure()
        if not shortcuts.host_allowed(request) or (settings.SECURE_SSL_REDIRECT and not secure):
            return self.app(environ, start_response)  # Django answers with its 400 or redirect
        body = shortcuts.json_body(environ, json_types)
        if body is None:
            return self.app(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)  # for Django, should it answer after all
        instances = _instances(body)
        if instances is None or not _throttle_allows(token):
            return self.app(environ, start_response)
        shortcuts.close_old_connections()
        try:
            status, data = _answer(token, instances, started, environ.get("CONTENT_LENGTH"))
        except Exception:
            logger.exception("predict fast path failed; Django answers instead")
            status = None
        finally:
            shortcuts.close_old_connections()
        if status is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        content = renderer.render(data)
        start_response(shortcuts.STATUS_LINES[status], [*(secure_headers if secure else headers),
                                              ("Content-Length", str(len(content)))])
        return [content]


def _instances(body: bytes) -> list | None:
    """The body's instances when the view would take them without its serializers."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the view's parser names the problem
    return plain_instances(data)


def _throttle_allows(token: ApiToken) -> bool:
    """The view's throttle, counted the same way (a refusal is left to DRF to answer)."""
    return TokenScopedRateThrottle().allow_request(SimpleNamespace(auth=token), PredictApi)


def _answer(token: ApiToken, instances: list, started: float,
            content_length: str | None) -> tuple[int, dict]:
    """Predict with the served model and log the request, as the view does."""
    batch = None
    try:
        batch = predict(project=token.project, instances=instances)
    except DomainError as exc:
        status, data = exc.status, exc.body()
    else:
        status, data = 200, predictions_output(batch)
    predict_log(token=token, status_code=status,
                latency_ms=(time.perf_counter() - started) * 1000, batch=batch,
                instances=instances, multipart=False, content_length=content_length)
    return status, data
