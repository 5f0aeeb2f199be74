"""Root URL configuration."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from csp.decorators import csp_update
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# Swagger UI under the site's Content-Security-Policy: the split view loads its start-up
# script from a URL instead of inlining it (our template moves its style to a file); its
# stylesheet draws icons as data: images, which this page alone allows.
api_docs = csp_update({"img-src": ["data:"]})(
    SpectacularSwaggerSplitView.as_view(url_name="api-schema"))


def favicon(_request):
    """Browsers and tools ask for /favicon.ico whatever the page says: the site's icon
    (every page links it too). Not permanent: in production the static name is hashed."""
    return HttpResponseRedirect(static("img/favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("api/v1/", include("annotation.api_urls")),
    path("api/v1/", include("serving.urls")),
    path("api/v1/", include("learning.api_urls")),
    path("", include("serving.page_urls")),
    path("", include("annotation.urls")),
    path("", include("learning.urls")),
]

handler404 = "core.http_errors.page_not_found"
handler500 = "core.http_errors.server_error"
