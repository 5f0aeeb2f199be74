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
    feedback_annotator_get,
    production_label_correct,
    production_sample_create,
)
from annotation.services.projects import (
    InvalidSettings,
    membership_set,
    personal_token_create,
    project_create,
    project_create_by,
    project_settings_update,
)
from annotation.services.queue import (
    label_counts_add,
    label_counts_rebuild,
    label_submit,
    label_undo_last,
    sample_lease_next,
    sample_scores_write,
    sample_skip,
    samples_create_images,
)
from annotation.services.review import label_correct

__all__ = [
    "InvalidProductionPayload",
    "ProductionPayload",
    "feedback_annotator_get",
    "production_label_correct",
    "production_sample_create",
    "InvalidSettings",
    "import_format_for",
    "import_job_create",
    "import_job_create_from_path",
    "import_job_run",
    "import_job_start",
    "label_correct",
    "label_counts_add",
    "label_counts_rebuild",
    "label_submit",
    "label_undo_last",
    "membership_set",
    "personal_token_create",
    "project_create",
    "project_create_by",
    "project_settings_update",
    "sample_lease_next",
    "sample_scores_write",
    "sample_skip",
    "samples_create_images",
]
