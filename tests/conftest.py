"""Fixtures shared by every test folder."""
import os

import pytest

from serving import model_cache
from tests.factories import ImageSampleFactory, MembershipFactory, ProjectFactory, UserFactory


def require_service(name: str, reason: str) -> None:
    """Skip locally when a real service is missing; under CI=true, fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is required under CI=true: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ARTIFACT_ROOT = tmp_path / "media" / "artifacts"
    model_cache.clear()
    yield
    model_cache.clear()


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def annotator(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="annotator")
    return user


@pytest.fixture
def make_samples(project):
    """Create ``n`` image samples per (split, class), cycling through the project's labels."""

    def make(n_pool: int, n_test: int = 0, labels=None):
        labels = labels or project.labels
        made = []
        for split, n in (("pool", n_pool), ("test", n_test)):
            for i in range(n):
                made.append(
                    ImageSampleFactory(project=project, split=split, true_label=labels[i % len(labels)])
                )
        return made

    return make
