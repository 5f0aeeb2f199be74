"""Admin registrations for tokens and prediction logs."""
from django.contrib import admin

from serving.models import ApiToken, PredictionLog


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["project", "name", "key_prefix", "scopes", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]


@admin.register(PredictionLog)
class PredictionLogAdmin(admin.ModelAdmin):
    list_display = ["project", "model_version", "outcome", "predicted_label", "confidence", "created_at"]
    search_fields = ["prediction_id"]
