"""Page routes of the learning app: the project page and its retrain button."""
from django.urls import path

from learning import views

urlpatterns = [
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/retrain", views.project_retrain, name="project-retrain"),
]
