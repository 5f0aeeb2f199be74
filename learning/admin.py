"""Admin registration for model versions, the retrain cycle's alerts and simulate runs."""
from django.contrib import admin

from learning.models import Alert, LabelSuspicion, ModelVersion, SimulationRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "attempts", "accuracy", "macro_f1", "is_served"]
    list_filter = ["project", "status"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "kind", "message", "count", "last_seen_at", "resolved_at"]
    list_filter = ["project", "kind"]


@admin.register(SimulationRun)
class SimulationRunAdmin(admin.ModelAdmin):
    list_display = ["project", "source", "model", "batch_size", "seeds", "full_accuracy", "created_at"]
    list_filter = ["project"]


@admin.register(LabelSuspicion)
class LabelSuspicionAdmin(admin.ModelAdmin):
    list_display = ["project", "sample", "value", "likely", "score", "reason", "version"]
    list_filter = ["project", "reason"]
    raw_id_fields = ["sample", "label", "version"]
