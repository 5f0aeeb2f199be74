"""App config for the prediction API, prediction logs and the served model's suggestions."""
from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "serving"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotation import hooks
        from serving import schema  # noqa: F401  registers the OpenAPI auth extension
        from serving import tasks  # noqa: F401  registers the Celery tasks
        from serving.suggestions import suggestions_for

        hooks.register(suggestions=suggestions_for)
