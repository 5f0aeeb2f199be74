"""Admin registration for model versions."""
from django.contrib import admin

from learning.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "accuracy", "macro_f1", "is_served"]
    list_filter = ["project", "status"]
