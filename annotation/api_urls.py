"""API routes of project data under /api/v1/: imports, exports and labeling."""
from django.urls import path, re_path

from annotation.apis import ImportJobDetailApi, LabelExportApi, SampleImportApi
from annotation.labeling_apis import LabelSubmitApi, NextSampleApi, SampleImageApi
from annotation.project_apis import ProjectDetailApi, ProjectListApi
from annotation.stats_apis import AnnotatorStatsApi

urlpatterns = [
    path("projects", ProjectListApi.as_view(), name="api-projects"),
    path("projects/<slug:slug>", ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<slug:slug>/next", NextSampleApi.as_view(), name="api-next"),
    path("projects/<slug:slug>/labels", LabelSubmitApi.as_view(), name="api-labels"),
    path("projects/<slug:slug>/samples/<int:sample_id>/image", SampleImageApi.as_view(),
         name="api-sample-image"),
    path("projects/<slug:slug>/samples", SampleImportApi.as_view(), name="api-samples"),
    path("projects/<slug:slug>/imports/<int:job_id>", ImportJobDetailApi.as_view(),
         name="api-import-job"),
    path("projects/<slug:slug>/annotators", AnnotatorStatsApi.as_view(), name="api-annotators"),
    re_path(r"^projects/(?P<slug>[-a-zA-Z0-9_]+)/export\.(?P<fmt>csv|jsonl)$",
            LabelExportApi.as_view(), name="api-export"),
]
