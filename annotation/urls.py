"""Page routes of projects and labeling."""
from django.urls import path

from annotation import views

urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/label/", views.label, name="label"),
    path(
        "projects/<slug:slug>/samples/<int:sample_id>/image",
        views.sample_image,
        name="sample-image",
    ),
]
