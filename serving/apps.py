"""App config for API tokens, the prediction API and prediction logs."""
from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "serving"
    default_auto_field = "django.db.models.BigAutoField"
