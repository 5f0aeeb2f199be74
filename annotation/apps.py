"""App config for projects, samples, labels and the labeling queue."""
from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotation import tasks  # noqa: F401  registers the Celery tasks that services name
