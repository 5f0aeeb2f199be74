"""Fixtures of the learning tests."""
import pytest

from tests.factories import label_given


@pytest.fixture
def labeled_project(project, annotator, make_samples):
    """A project whose pool and test samples are all labeled with their true class."""
    project.batch_size = 1000  # no automatic trigger; tests request explicitly
    project.save()
    samples = make_samples(30, 12)
    for i, sample in enumerate(samples):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3 if i < 30 else (i - 30) % 3])
    return project
