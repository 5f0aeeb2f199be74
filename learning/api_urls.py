"""API routes of the learning app under /api/v1/: the labels that are probably wrong."""
from django.urls import path

from learning.apis import LabelSuspicionListApi

urlpatterns = [
    path("projects/<slug:slug>/labels/suspicious", LabelSuspicionListApi.as_view(),
         name="api-labels-suspicious"),
]
