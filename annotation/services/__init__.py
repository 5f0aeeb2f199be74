"""Writes of the annotation app, one module per concept; import them from here."""
from annotation.services.imports import (
    import_format_for,
    import_job_create,
    import_job_create_from_path,
    import_job_run,
    import_job_start,
)
from annotation.services.production import (
    InvalidProductionPayload,
    ProductionPayload,
    RoutedInput,
    feedback_annotator_get,
    production_label_correct,
    production_sample_create,
    production_sample_feedback,
    production_samples_route,
)
from annotation.services.projects import (
    InvalidSettings,
    membership_set,
    personal_token_create,
    project_create,
    project_create_by,
    project_settings_set,
    project_settings_update,
)
from annotation.services.leases import label_undo_last, sample_lease_next, sample_skip
from annotation.services.ledger import label_check, label_counts_add, label_counts_rebuild
from annotation.services.review import label_correct
from annotation.services.scores import sample_scores_write
from annotation.services.submit import label_submit

__all__ = [
    "InvalidProductionPayload",
    "ProductionPayload",
    "feedback_annotator_get",
    "production_label_correct",
    "production_sample_create",
    "production_samples_route",
    "production_sample_feedback",
    "RoutedInput",
    "InvalidSettings",
    "import_format_for",
    "import_job_create",
    "import_job_create_from_path",
    "import_job_run",
    "import_job_start",
    "label_check",
    "label_correct",
    "label_counts_add",
    "label_counts_rebuild",
    "label_submit",
    "label_undo_last",
    "membership_set",
    "personal_token_create",
    "project_create",
    "project_create_by",
    "project_settings_set",
    "project_settings_update",
    "sample_lease_next",
    "sample_scores_write",
    "sample_skip",
]
