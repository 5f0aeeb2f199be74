"""The project's URLconf with the labeling API's two routes renamed, as an edit of
annotation/api_urls.py would rename them (a test sets ROOT_URLCONF to this module)."""
from django.urls import include, path

from annotation import api_urls
from config import urls

MOVED = {"api-next": "projects/<slug:slug>/queue/next-sample",
         "api-labels": "projects/<slug:slug>/queue/given-labels"}

urlpatterns = [
    path("api/v1/", include([
        path(MOVED[entry.name], entry.callback, name=entry.name) if entry.name in MOVED else entry
        for entry in api_urls.urlpatterns])),
    *(entry for entry in urls.urlpatterns if getattr(entry, "urlconf_name", None) is not api_urls),
]
# The root URLconf's error handlers, should it name any (Django looks for them here).
handler404 = getattr(urls, "handler404", "django.views.defaults.page_not_found")
handler500 = getattr(urls, "handler500", "django.views.defaults.server_error")
