"""Every file read back from ARTIFACT_ROOT is verified or cannot run code.

Whoever can write to the artifact root must not get code run in a worker: a pickled file
is loaded only when its bytes match the sha256 the database recorded when it was written,
and the numeric caches refuse pickles (and are refilled when a segment does not load).
"""
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.factories import label_given
from learning import artifacts, models
from learning.models import ModelVersion
from learning.services import model_version_request, model_version_train


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def _train(project) -> ModelVersion:
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    return version


@pytest.fixture
def text_project(text_project_labeled):
    return text_project_labeled


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a planted pickle was executed"


def test_a_tampered_cached_featurizer_is_refused_refit_and_never_unpickled(
        text_project, marker, settings, caplog):
    assert _train(text_project).status == "ready"
    cached = list((Path(settings.ARTIFACT_ROOT) / "featurizers" / str(text_project.pk))
                  .glob("*.joblib"))
    assert cached
    for path in cached:
        path.write_bytes(_evil_pickle(marker))
    with caplog.at_level(logging.ERROR, logger="learning.artifacts"):
        second = _train(text_project)
    assert not marker.exists()
    assert second.status == "ready", second.error
    assert "refusing the cached featurizer" in caplog.text
    # Refitted and recorded again: the next retrain uses the fresh file.
    record = models.CachedFile.objects.get(project=text_project, kind="featurizer")
    assert artifacts.featurizer_cached(project_id=text_project.pk, key=record.key) is not None


def test_a_featurizer_file_nobody_recorded_is_never_unpickled(text_project, marker, settings):
    _train(text_project)
    record = models.CachedFile.objects.get(project=text_project, kind="featurizer")
    planted = Path(settings.ARTIFACT_ROOT) / record.path
    planted.write_bytes(_evil_pickle(marker))
    # A record pointing elsewhere, or none at all: the planted file is not loaded.
    models.CachedFile.objects.filter(pk=record.pk).update(sha256="0" * 64)
    assert artifacts.featurizer_cached(project_id=text_project.pk, key=record.key) is None
    assert not models.CachedFile.objects.filter(pk=record.pk).exists()
    assert artifacts.featurizer_cached(project_id=text_project.pk, key=record.key) is None


def test_a_tampered_model_artifact_is_refused(text_project, marker, settings):
    version = _train(text_project)
    (Path(settings.ARTIFACT_ROOT) / version.artifact_path).write_bytes(_evil_pickle(marker))
    with pytest.raises(artifacts.ArtifactError, match="does not match"):
        artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    with pytest.raises(artifacts.ArtifactError, match="outside the artifact storage"):
        artifacts.load(path="../../etc/passwd", sha256=version.artifact_sha256)


def _plant_object_segment(directory: Path, marker: Path, *, sparse: bool) -> None:
    """Put a segment whose ids are a pickled object array into a numeric cache."""
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "seg-000000000000-planted.ids.npy", evil, allow_pickle=True)
    if not sparse:
        np.save(directory / "seg-000000000000-planted.rows.npy", evil, allow_pickle=True)


def _retrain_scores(project, marker: Path, unlabeled: int) -> None:
    """The next retrain runs nothing planted, succeeds and scores the whole pool."""
    version = _train(project)
    assert not marker.exists()
    assert version.status == "ready", version.error
    assert version.scored_sample_count == unlabeled


def test_a_pickle_planted_in_the_pixel_cache_is_refused_and_training_succeeds(
        project, annotator, make_samples, marker, settings):
    project.batch_size = 1000
    project.save()
    for i, sample in enumerate(make_samples(24, 9)):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    make_samples(6)
    assert _train(project).status == "ready"
    cache_dir = Path(settings.ARTIFACT_ROOT) / "features" / str(project.pk) / "image-8"
    assert list(cache_dir.glob("*.ids.npy"))
    _plant_object_segment(cache_dir, marker, sparse=False)
    _retrain_scores(project, marker, 6)


def test_a_pickle_planted_in_the_text_rows_cache_is_refused_and_scoring_succeeds(
        text_project, marker, settings):
    assert _train(text_project).status == "ready"
    record = models.CachedFile.objects.get(project=text_project, kind="featurizer")
    rows_dir = artifacts.featurizer_rows_dir(project_id=text_project.pk, key=record.key)
    assert list(rows_dir.glob("*.ids.npy"))
    _plant_object_segment(rows_dir, marker, sparse=True)
    _retrain_scores(text_project, marker, 10)
