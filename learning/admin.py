"""Admin registration for model versions and the retrain cycle's alerts."""
from django.contrib import admin

from learning.models import Alert, ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "attempts", "accuracy", "macro_f1", "is_served"]
    list_filter = ["project", "status"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "kind", "message", "count", "last_seen_at", "resolved_at"]
    list_filter = ["project", "kind"]
