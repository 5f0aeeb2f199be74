"""API routes under /api/v1/."""
from django.urls import path

from serving.apis import (
    FeedbackApi,
    ModelVersionDetailApi,
    ModelVersionExportApi,
    ModelVersionListApi,
    ModelVersionPromoteApi,
    MonitoringApi,
    PredictApi,
    RuleDetailApi,
    RuleFiringsApi,
    RuleListApi,
)

urlpatterns = [
    path("projects/<slug:slug>/predict", PredictApi.as_view(), name="api-predict"),
    path("projects/<slug:slug>/feedback", FeedbackApi.as_view(), name="api-feedback"),
    path("projects/<slug:slug>/models", ModelVersionListApi.as_view(), name="api-model-list"),
    path("projects/<slug:slug>/models/<int:number>", ModelVersionDetailApi.as_view(),
         name="api-model-detail"),
    path("projects/<slug:slug>/models/<int:number>/promote", ModelVersionPromoteApi.as_view(),
         name="api-model-promote"),
    path("projects/<slug:slug>/models/<int:number>/export", ModelVersionExportApi.as_view(),
         name="api-model-export"),
    path("projects/<slug:slug>/monitoring", MonitoringApi.as_view(), name="api-monitoring"),
    path("projects/<slug:slug>/rules", RuleListApi.as_view(), name="api-rules"),
    path("projects/<slug:slug>/rules/<int:rule_id>", RuleDetailApi.as_view(), name="api-rule"),
    path("projects/<slug:slug>/rules/<int:rule_id>/firings", RuleFiringsApi.as_view(),
         name="api-rule-firings"),
]
