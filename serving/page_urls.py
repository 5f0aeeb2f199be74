"""Page routes of the serving app."""
from django.urls import path

from serving import rule_views, views
from serving.apis.metrics import MetricsApi

urlpatterns = [
    path("projects/<slug:slug>/tokens/", views.project_tokens, name="project-tokens"),
    path("projects/<slug:slug>/tokens/<int:token_id>/revoke", views.project_token_revoke,
         name="project-token-revoke"),
    path("projects/<slug:slug>/monitoring/", views.project_monitoring, name="project-monitoring"),
    path("projects/<slug:slug>/rules/", rule_views.project_rules, name="project-rules"),
    path("projects/<slug:slug>/rules/<int:rule_id>/", rule_views.project_rule_edit,
         name="project-rule-edit"),
    path("projects/<slug:slug>/rules/<int:rule_id>/delete", rule_views.project_rule_delete,
         name="project-rule-delete"),
    path("projects/<slug:slug>/rules/alerts", rule_views.project_rule_alerts,
         name="project-rule-alerts"),
    path("projects/<slug:slug>/schedules", rule_views.project_schedules,
         name="project-schedules"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
]
