"""Projects, their samples and the labels annotators give them; one module per concept.

The callables that migrations name (``_random_key``, ``sample_image_path``,
``import_file_path``) stay here, at ``annotation.models``, where migrations look for them.
"""
from __future__ import annotations

import random


def _random_key() -> float:
    return random.random()


def sample_image_path(instance: Sample, filename: str) -> str:
    return f"samples/{instance.project_id}/{filename}"


def import_file_path(instance: ImportJob, filename: str) -> str:
    return f"imports/{instance.project_id}/{filename}"


# Models after the callables they use.
from annotation.models.projects import (  # noqa: E402
    COMMAND_KEYS,
    Membership,
    Project,
    ProjectSettingsChange,
)
from annotation.models.samples import ImportJob, Lease, Sample, SampleQuerySet  # noqa: E402
from annotation.models.labels import Label, LabelCounts, LabelQuerySet  # noqa: E402
from annotation.models.tokens import ApiToken  # noqa: E402

__all__ = [
    "COMMAND_KEYS", "ApiToken", "ImportJob", "Label", "LabelCounts", "LabelQuerySet", "Lease",
    "Membership", "Project", "ProjectSettingsChange", "Sample", "SampleQuerySet",
    "import_file_path", "sample_image_path",
]
