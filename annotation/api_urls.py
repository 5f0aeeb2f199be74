"""API routes of project data under /api/v1/: sample imports and label exports."""
from django.urls import path, re_path

from annotation.apis import ImportJobDetailApi, LabelExportApi, SampleImportApi

urlpatterns = [
    path("projects/<slug:slug>/samples", SampleImportApi.as_view(), name="api-samples"),
    path("projects/<slug:slug>/imports/<int:job_id>", ImportJobDetailApi.as_view(),
         name="api-import-job"),
    re_path(r"^projects/(?P<slug>[-a-zA-Z0-9_]+)/export\.(?P<fmt>csv|jsonl)$",
            LabelExportApi.as_view(), name="api-export"),
]
