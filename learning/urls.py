"""Page routes of the learning app: the project page, its retrain button, the version pages."""
from django.urls import path

from learning import version_views, views

_VERSION = "projects/<slug:slug>/versions/<int:number>/"

urlpatterns = [
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/retrain", views.project_retrain, name="project-retrain"),
    path(_VERSION, version_views.version_detail, name="version-detail"),
    path(f"{_VERSION}serve", version_views.version_serve, name="version-serve"),
    path(f"{_VERSION}training-set.csv", version_views.version_training_set, {"fmt": "csv"},
         name="version-training-set-csv"),
    path(f"{_VERSION}training-set.jsonl", version_views.version_training_set, {"fmt": "jsonl"},
         name="version-training-set-jsonl"),
]
