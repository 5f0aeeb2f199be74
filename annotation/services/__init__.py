"""Writes of the annotation app, one module per concept; import them from here."""
from annotation.services.imports import (
    import_format_for,
    import_job_create,
    import_job_create_from_path,
    import_job_run,
    import_job_start,
)
from annotation.services.projects import (
    LABELING_ROLES,
    SCIENCE_ROLES,
    member_require,
    membership_set,
    project_create,
)
from annotation.services.queue import (
    label_submit,
    sample_lease_next,
    sample_scores_write,
    samples_create_images,
)

__all__ = [
    "LABELING_ROLES",
    "SCIENCE_ROLES",
    "import_format_for",
    "import_job_create",
    "import_job_create_from_path",
    "import_job_run",
    "import_job_start",
    "label_submit",
    "member_require",
    "membership_set",
    "project_create",
    "sample_lease_next",
    "sample_scores_write",
    "samples_create_images",
]
