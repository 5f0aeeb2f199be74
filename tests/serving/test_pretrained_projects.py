"""Projects that chose a pretrained featurizer: train, rescore, predict, refuse to export.

Need `make featurizers` on the machine: skipped locally without it, failed under CI=true.
"""
import base64

import pytest

from annotation.services.projects import project_settings_set
from learning import artifacts
from learning.models import ModelVersion
from learning.pretrained import embedding_cache, files
from learning.pretrained.transformers import CnnFeaturizer, MiniLMFeaturizer
from tests.factories import png_bytes
from tests.serving.conftest import image_project_trained, train_version


def _predict(client, project, instances):
    return client.post(f"/api/v1/projects/{project.slug}/predict", {"instances": instances},
                       format="json")


def test_an_image_project_on_cnn_features_trains_predicts_and_refuses_export(
        installed, project, annotator, make_samples, token_client, settings, tmp_path):
    project_settings_set(project=project, featurizer="cnn")
    image_project_trained(project, annotator, make_samples, unlabeled=6)
    version = ModelVersion.objects.get(project=project)
    assert version.status == "ready", version.error
    model = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    assert isinstance(model.steps[0][1], CnnFeaturizer)
    assert version.accuracy >= 0.6 and version.scored_sample_count == 6
    # The fit embedded every sample once; the rescoring read them back.
    cache = embedding_cache.cache_dir("cnn")
    assert len(list(cache.glob("*.ids.npy"))) >= 1

    client = token_client(project, scopes=("predict", "admin"))
    response = _predict(client, project, [
        {"image_base64": base64.b64encode(png_bytes(v, seed=40 + v)).decode()} for v in range(3)])
    assert response.status_code == 200, response.content
    assert len(response.json()["predictions"]) == 3

    for fmt in ("mlflow", "onnx"):
        exported = client.get(f"/api/v1/projects/{project.slug}/models/{version.number}/export",
                              {"format": fmt})
        assert exported.status_code == 409, exported.content
        assert exported.json()["detail"]["reason"] == "pretrained_featurizer"

    settings.FEATURIZER_DIR = tmp_path / "not-installed"
    refused = _predict(client, project, [{"image_base64": base64.b64encode(png_bytes(1)).decode()}])
    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "featurizer_missing"
    assert "make featurizers" in refused.json()["error"]


def test_a_text_project_on_minilm_trains_and_rescores(installed, text_project_labeled):
    project_settings_set(project=text_project_labeled, featurizer="minilm")
    version = train_version(text_project_labeled)
    assert version.status == "ready", version.error
    model = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    assert isinstance(model.steps[0][1], MiniLMFeaturizer)
    assert version.accuracy >= 0.9 and version.scored_sample_count == 10


def test_training_without_the_files_fails_with_the_reason(
        installed, text_project_labeled, settings, tmp_path):
    project_settings_set(project=text_project_labeled, featurizer="minilm")
    settings.FEATURIZER_DIR = tmp_path / "not-installed"
    version = train_version(text_project_labeled)
    assert version.status == "failed" and "make featurizers" in version.error
