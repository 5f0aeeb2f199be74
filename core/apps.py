"""App config for the ground layer: errors, the API's error shape, JSON, throttles, limits."""
from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"
