"""Admin registration for prediction logs."""
from django.contrib import admin

from serving.models import PredictionLog


@admin.register(PredictionLog)
class PredictionLogAdmin(admin.ModelAdmin):
    list_display = ["project", "model_version", "outcome", "predicted_label", "confidence", "created_at"]
    search_fields = ["prediction_id"]
