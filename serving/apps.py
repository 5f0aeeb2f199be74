"""App config for API tokens, the prediction API and prediction logs."""
from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "serving"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from serving import schema  # noqa: F401  registers the OpenAPI auth extension
