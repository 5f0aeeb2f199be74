"""Fixtures for the serving tests: a project with a served model, and token-bearing clients."""
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import label_given
from learning.services import model_version_request, model_version_train
from serving.services import api_token_create


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    """Throttle counters live in the cache and token ids repeat across tests: start clean."""
    cache.clear()
    yield
    cache.clear()


def train_version(project):
    """Request and train one more version of ``project``; return it refreshed."""
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    return version


def image_project_trained(project, annotator, make_samples, *, unlabeled: int = 0):
    """Label 30 pool and 9 test images of ``project``, add ``unlabeled`` more, train."""
    from tests.factories import ImageSampleFactory

    project.batch_size = 1000
    project.save()
    for i, sample in enumerate(make_samples(30, 9)):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    for i in range(unlabeled):
        ImageSampleFactory(project=project, true_label=i % 3)
    train_version(project)
    return project


@pytest.fixture
def served_project(project, annotator, make_samples):
    return image_project_trained(project, annotator, make_samples)


@pytest.fixture
def token_client():
    """Return ``make(project, scopes=("predict",))`` -> an APIClient sending a fresh token."""

    def make(project, scopes=("predict",)):
        _token, key = api_token_create(project=project, scopes=list(scopes))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        client.token = _token
        return client

    return make


@pytest.fixture
def client_with_token(served_project, token_client):
    return token_client(served_project)
