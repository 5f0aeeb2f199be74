"""JSON in and out for the hot API views: orjson parser and renderer, no Accept parsing."""
from __future__ import annotations

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_fallback = JSONEncoder().default  # Decimal, lazy strings, querysets ...: as DRF renders them


class OrjsonParser(JSONParser):
    """Parse a JSON body with orjson; strict JSON (NaN and Infinity are refused)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return orjson.loads(stream.read() if stream is not None else b"")
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}")


class OrjsonRenderer(JSONRenderer):
    """Render with orjson: UUIDs, datetimes and numpy scalars natively, compact output."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, default=_fallback,
                            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class FirstRendererNegotiation(BaseContentNegotiation):
    """Answer with the view's first renderer; pick the parser by Content-Type as DRF does.

    These views only speak JSON, so parsing the Accept header (a sizeable share of a small
    request's time in DRF's negotiation) can only ever choose the same renderer.
    """

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


class ReusedPartsMixin:
    """Build a view's parsers, renderers and authenticators once per class, not per request.

    They hold no per-request state (unlike permissions and throttles, which DRF still
    builds fresh).
    """

    _parts: dict

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._parts = {}

    def _reused(self, name: str, classes) -> list:
        parts = self._parts.get(name)
        if parts is None:
            parts = self._parts[name] = [klass() for klass in classes]
        return parts

    def get_parsers(self):
        return self._reused("parsers", self.parser_classes)

    def get_renderers(self):
        return self._reused("renderers", self.renderer_classes)

    def get_authenticators(self):
        return self._reused("authenticators", self.authentication_classes)
