"""App config for model training, evaluation, pool scoring and promotion."""
from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "learning"
    default_auto_field = "django.db.models.BigAutoField"
