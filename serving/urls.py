"""API routes under /api/v1/."""
from django.urls import path

from serving.apis import PredictApi

urlpatterns = [
    path("projects/<slug:slug>/predict", PredictApi.as_view(), name="api-predict"),
]
