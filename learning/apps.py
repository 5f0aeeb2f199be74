"""App config for model training, evaluation, pool scoring and promotion."""
from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "learning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotation import hooks
        # tasks: registers the Celery tasks
        from learning import featurizer_options, selectors, services, suspicion_selectors, tasks

        hooks.register(
            labels_added=services.model_version_request_if_due,
            samples_added=tasks.pool_cold_start_after_commit,
            served_model=selectors.model_version_served_summary,
            batch_start=selectors.retrain_batch_start,
            suspicious_labels=suspicion_selectors.label_suspicion_list,
            featurizer_unavailable=featurizer_options.unavailable_reason,
        )
