"""Do-nothing servers for ``bench/queue.py --floor``: what this machine gives a request
that does no work, under the same client loop, server and worker settings.

``raw_application`` is a bare WSGI callable; ``django_application`` is Django with the
production settings and middleware routing to a DRF view without authentication that
answers constants. Both answer ``GET .../next`` with a sample and ``POST .../labels``
with a label, in the shapes the real endpoints use, so the bench's clients run unchanged.
"""
from __future__ import annotations

import os

_SAMPLE = b'{"sample": {"id": 1, "kind": "text", "split": "pool", "text": "stocks rally",' \
          b' "values": null, "image_url": null, "lease_expires": null, "labels": ["pos"]}}'
_LABEL = b'{"id": 1, "sample": 1, "value": "pos", "annotator": "a", "duration_ms": null,' \
         b' "created_at": "2026-11-22T00:00:00Z"}'


def raw_application(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body, status = _LABEL, "201 Created"
    else:
        body, status = _SAMPLE, "200 OK"
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _django_application():
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.queue_floor_settings"
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _urlpatterns():
    import json

    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    sample, label = json.loads(_SAMPLE), json.loads(_LABEL)

    class Constant(APIView):
        authentication_classes: list = []
        permission_classes: list = []

        def get(self, request, slug):
            return Response(sample)

        def post(self, request, slug):
            request.data  # parse the body, as the real view does
            return Response(label, status=201)

    return [path("api/v1/projects/<slug:slug>/next", Constant.as_view()),
            path("api/v1/projects/<slug:slug>/labels", Constant.as_view())]


def __getattr__(name: str):
    # Built on first use: importing this module for raw_application must not set up Django.
    if name == "django_application":
        globals()[name] = _django_application()
        return globals()[name]
    if name == "urlpatterns":
        globals()[name] = _urlpatterns()
        return globals()[name]
    raise AttributeError(name)
