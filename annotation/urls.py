"""Page routes of projects, imports, labeling and review."""
from django.urls import path, re_path

from annotation import stats_views, views

urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("projects/new/", views.project_new, name="project-new"),
    path("projects/<slug:slug>/import/", views.project_import, name="project-import"),
    path("projects/<slug:slug>/imports/<int:job_id>/", views.import_job, name="import-job"),
    re_path(r"^projects/(?P<slug>[-a-zA-Z0-9_]+)/export\.(?P<fmt>csv|jsonl)$",
            views.label_export, name="label-export"),
    path("projects/<slug:slug>/label/", views.label, name="label"),
    path("projects/<slug:slug>/label/skip", views.label_skip, name="label-skip"),
    path("projects/<slug:slug>/label/undo", views.label_undo, name="label-undo"),
    path("projects/<slug:slug>/review/", views.review, name="review"),
    path("projects/<slug:slug>/review/<int:sample_id>/correct", views.review_correct,
         name="review-correct"),
    path("projects/<slug:slug>/annotators/", stats_views.annotators, name="annotators"),
    path("projects/<slug:slug>/settings/", views.project_settings, name="project-settings"),
    path("projects/<slug:slug>/samples/<int:sample_id>/suggestion", views.sample_suggestion,
         name="sample-suggestion"),
    path(
        "projects/<slug:slug>/samples/<int:sample_id>/image",
        views.sample_image,
        name="sample-image",
    ),
]
