"""Every DRF view routed anywhere declares its authentication and permission classes.

Inheriting DRF's defaults silently would make a new view's access rules depend on settings.
The OpenAPI schema and docs views are exempt by design: they are public (``AllowAny`` with
no authentication, from ``SPECTACULAR_SETTINGS``) so clients can discover the API before
they hold a token; the schema holds no project data.
"""
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

PUBLIC_BY_DESIGN = {SpectacularAPIView, SpectacularSwaggerSplitView}


def _views(resolver=None, prefix=""):
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from _views(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            cls = getattr(entry.callback, "cls", None) or getattr(entry.callback, "view_class", None)
            if isinstance(cls, type) and issubclass(cls, APIView):
                yield prefix + str(entry.pattern), cls


def _declared(cls, attribute):
    """Return the value of ``attribute`` if a class of ours (not DRF's APIView) sets it."""
    for klass in cls.__mro__:
        if attribute in vars(klass):
            return None if klass is APIView else vars(klass)[attribute]
    return None


def test_every_api_view_declares_authentication_and_permissions():
    views = dict(_views())
    ours = {route: cls for route, cls in views.items() if cls not in PUBLIC_BY_DESIGN}
    assert {"api/v1/projects/<slug:slug>/predict", "api/v1/projects/<slug:slug>/models",
            "api/v1/projects/<slug:slug>/models/<int:number>",
            "api/v1/projects/<slug:slug>/models/<int:number>/promote"} <= set(ours)
    for route, cls in ours.items():
        assert _declared(cls, "authentication_classes"), f"{route}: {cls.__name__} needs authentication_classes"
        assert _declared(cls, "permission_classes"), f"{route}: {cls.__name__} needs permission_classes"
        assert AllowAny not in cls.permission_classes, f"{route}: {cls.__name__} allows anyone"


def test_public_views_are_only_the_schema_and_docs():
    public = {cls for _route, cls in _views() if cls in PUBLIC_BY_DESIGN}
    assert public == PUBLIC_BY_DESIGN
    for cls in public:
        assert [p for p in cls.permission_classes] == [AllowAny]


