"""GET /metrics: Prometheus exposition text, for a scraper's address or a 'monitor' token."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from core.throttling import TokenScopedRateThrottle, client_address
from annotation.authentication import ProjectTokenAuthentication
from annotation.models import ApiToken
from serving.metrics import CONTENT_TYPE, metrics_text


class CanScrapeMetrics(BasePermission):
    """A client address in ``METRICS_ALLOWED_IPS`` (every project), or a project token
    with the ``monitor`` scope (its own project's series)."""

    message = "scraping needs a token with the 'monitor' scope or an address in METRICS_ALLOWED_IPS"

    def has_permission(self, request: Request, view) -> bool:
        token = request.auth
        if isinstance(token, ApiToken):
            return token.user_id is None and ApiToken.Scope.MONITOR in token.scopes
        return client_address(request.META) in settings.METRICS_ALLOWED_IPS


@extend_schema(exclude=True)  # Prometheus text, not part of the JSON API
class MetricsApi(APIView):
    authentication_classes = [ProjectTokenAuthentication]
    permission_classes = [CanScrapeMetrics]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"

    def get(self, request: Request) -> HttpResponse:
        token = request.auth
        project = token.project if isinstance(token, ApiToken) else None
        return HttpResponse(metrics_text(project=project), content_type=CONTENT_TYPE)
