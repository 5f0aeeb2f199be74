"""Page routes of the serving app."""
from django.urls import path

from serving import views
from serving.apis.metrics import MetricsApi

urlpatterns = [
    path("projects/<slug:slug>/tokens/", views.project_tokens, name="project-tokens"),
    path("projects/<slug:slug>/tokens/<int:token_id>/revoke", views.project_token_revoke,
         name="project-token-revoke"),
    path("projects/<slug:slug>/monitoring/", views.project_monitoring, name="project-monitoring"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
]
