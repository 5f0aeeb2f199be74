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
    settings.LOCAL_CACHE_DIR = tmp_path / "media" / "artifacts"
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


@pytest.fixture
def text_project_labeled(project, annotator):
    """The project as a text project: 40 labeled texts (30 pool, 10 test), 10 unlabeled."""
    from annotation.models import Project, Sample
    from tests.factories import label_given

    project.kind = Project.Kind.TEXT
    project.labels = ["spam", "ham"]
    project.batch_size = 1000
    project.save()
    words = {"spam": "win prize cash free offer", "ham": "meeting lunch report team notes"}
    for i in range(40):
        label = "spam" if i % 2 else "ham"
        split = Sample.Split.TEST if i >= 30 else Sample.Split.POOL
        sample = Sample.objects.create(project=project, text=f"{words[label]} {i}", split=split)
        label_given(sample=sample, annotator=annotator, value=label)
    for i in range(10):
        Sample.objects.create(project=project, text=f"free lunch {i}")
    return project


@pytest.fixture
def installed():
    """The pretrained featurizers' files (`make featurizers`): skip without them, or fail
    under CI=true."""
    from learning.pretrained import files

    for name in files.SPECS:
        reason = files.missing_reason(name)
        if reason:
            require_service("the pretrained featurizers (make featurizers)", reason)
