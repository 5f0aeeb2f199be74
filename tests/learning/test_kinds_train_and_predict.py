"""Text and tabular projects train, serve and suggest through one artifact with its featurizer."""
import io

import numpy as np
import pytest
from PIL import Image

from annotation.models import Project, Sample
from tests.factories import label_given
from serving.suggestions import suggestions_for
from learning import artifacts
from learning.models import ModelVersion
from learning.curves import learning_curve
from learning.selectors import ranking_staleness
from learning.services import model_version_request, model_version_train, pool_cold_start
from serving.instances import InvalidInstance
from serving.services import predict
from tests.factories import ImageSampleFactory, ProjectFactory

WORDS = {"spam": ["win", "prize", "cash", "free", "offer"], "ham": ["meeting", "lunch", "report",
                                                                    "team", "notes"]}


def _train(project) -> ModelVersion:
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    return version


def _label_all(project, annotator, samples_with_labels):
    for sample, value in samples_with_labels:
        label_given(sample=sample, annotator=annotator, value=value)


@pytest.fixture
def text_project(db, annotator, project):
    project.kind = Project.Kind.TEXT
    project.labels = ["spam", "ham"]
    project.batch_size = 1000
    project.save()
    rng = np.random.default_rng(0)
    made = []
    for i in range(60):
        label = "spam" if i % 2 else "ham"
        text = " ".join(rng.choice(WORDS[label], 4))
        split = Sample.Split.TEST if i >= 44 else Sample.Split.POOL
        made.append((Sample.objects.create(project=project, text=text, split=split), label))
    for i in range(20):  # unlabeled, some empty
        Sample.objects.create(project=project, text="" if i % 5 == 0 else "free cash team")
    _label_all(project, annotator, made)
    return project


@pytest.fixture
def tabular_project(db, annotator, project):
    project.kind = Project.Kind.TABULAR
    project.labels = ["a", "b"]
    project.columns = ["x", "y", "colour"]
    project.batch_size = 1000
    project.save()
    rng = np.random.default_rng(1)
    made = []
    for i in range(60):
        label = "a" if i % 2 else "b"
        values = {"x": float(rng.normal(3 if label == "a" else -3)), "y": float(rng.normal()),
                  "colour": "red" if label == "a" else "blue"}
        if i % 7 == 0:
            del values["y"]  # a column missing from some rows
        split = Sample.Split.TEST if i >= 44 else Sample.Split.POOL
        made.append((Sample.objects.create(project=project, values=values, split=split), label))
    for i in range(10):
        Sample.objects.create(project=project, values={"x": float(i - 5), "y": 0.0, "colour": "red"})
    _label_all(project, annotator, made)
    return project


def test_text_project_trains_serves_and_suggests(text_project):
    version = _train(text_project)
    assert version.status == "ready", version.error
    assert version.is_served and version.macro_f1 > 0.9
    model = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    assert model.steps[0][0] == "features"  # the fitted TF-IDF travels with the model
    batch = predict(project=text_project, instances=[{"text": "win free cash"},
                                                     {"text": "team meeting notes"}, {"text": ""}])
    assert [p.label for p in batch.predictions[:2]] == ["spam", "ham"]
    assert version.scored_sample_count == 20
    sample = Sample.objects.filter(project=text_project, status="unlabeled").first()
    assert suggestions_for(project=text_project, samples=[sample])[sample.pk].model_version == 1


def test_text_predict_refuses_a_non_text_instance(text_project):
    _train(text_project)
    with pytest.raises(InvalidInstance, match="'text'"):
        predict(project=text_project, instances=[{"text": 3}])
    with pytest.raises(InvalidInstance, match="unknown field"):
        predict(project=text_project, instances=[{"text": "x", "other": 1}])


def test_tabular_project_trains_with_missing_cells_and_serves(tabular_project):
    version = _train(tabular_project)
    assert version.status == "ready", version.error
    assert version.macro_f1 > 0.9
    batch = predict(project=tabular_project,
                    instances=[{"x": 3.0, "y": None, "colour": "red"},
                               {"x": -3.0, "y": 0.1, "colour": "blue"}])
    assert [p.label for p in batch.predictions] == ["a", "b"]
    sample = Sample.objects.filter(project=tabular_project, status="unlabeled").first()
    assert sample.pk in suggestions_for(project=tabular_project, samples=[sample])


def test_tabular_predict_names_missing_and_unknown_columns(tabular_project):
    _train(tabular_project)
    with pytest.raises(InvalidInstance) as caught:
        predict(project=tabular_project, instances=[{"x": 1.0, "colour": "red", "z": 2}])
    assert "'y'" in str(caught.value) and "'z'" in str(caught.value)
    assert caught.value.detail["missing"] == ["y"] and caught.value.detail["unknown"] == ["z"]


def test_numeric_tabular_scoring_uses_the_feature_cache(tabular_project, settings):
    for sample in Sample.objects.filter(project=tabular_project):
        sample.values.pop("colour")
        sample.save(update_fields=["values"])
    tabular_project.columns = ["x", "y"]
    tabular_project.save()
    _train(tabular_project)
    cache = list((settings.ARTIFACT_ROOT / "features").rglob("*.ids.npy"))
    assert cache, "the retrain filled a feature cache"
    Sample.objects.create(project=tabular_project, values={"x": 9.0, "y": 0.0})
    version = _train(tabular_project)
    assert version.status == "ready" and version.scored_sample_count == 11
    assert len(list((settings.ARTIFACT_ROOT / "features").rglob("*.ids.npy"))) == 2


def test_all_empty_texts_fail_with_a_clear_status_and_keep_the_served_model(text_project):
    first = _train(text_project)
    Sample.objects.filter(project=text_project).update(text="")
    second = _train(text_project)
    first.refresh_from_db()
    assert second.status == "failed" and "empty" in second.error
    assert first.is_served


def test_no_labeled_test_samples_trains_but_does_not_replace_the_served_model(text_project):
    first = _train(text_project)
    from annotation.models import Label
    Label.objects.filter(sample__split="test").delete()
    second = _train(text_project)
    first.refresh_from_db()
    assert second.status == "ready" and second.macro_f1 is None and first.is_served
    assert "no labeled test samples" in second.promotion_note


def test_latest_promotion_setting_serves_every_new_ready_version(text_project):
    first = _train(text_project)
    text_project.promotion = Project.Promotion.LATEST
    text_project.save()
    second = _train(text_project)
    first.refresh_from_db()
    assert second.is_served and not first.is_served
    assert "latest" in second.promotion_note


def test_images_of_mixed_sizes_and_modes_train(project, annotator, make_samples):
    project.batch_size = 1000
    project.save()
    samples = make_samples(12, 6)
    for i, sample in enumerate(samples[:4]):  # replace a few with RGB / RGBA / larger images
        mode, size = [("RGB", 20), ("RGBA", 5), ("P", 8), ("LA", 13)][i]
        buffer = io.BytesIO()
        Image.new(mode, (size, size)).save(buffer, format="PNG")
        with open(sample.image.path, "wb") as fh:
            fh.write(buffer.getvalue())
    for i, sample in enumerate(samples):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    version = _train(project)
    assert version.status == "ready", version.error


def test_undecodable_image_fails_with_a_clear_status(project, annotator, make_samples):
    samples = make_samples(6, 3)
    for i, sample in enumerate(samples):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    with open(samples[0].image.path, "wb") as fh:
        fh.write(b"not an image")
    version = _train(project)
    assert version.status == "failed" and "FeatureError" in version.error


def test_default_strategy_ranks_a_diverse_batch_above_plain_uncertainty(text_project):
    assert ProjectFactory().query_strategy == "default"
    text_project.batch_size = 5
    text_project.save()
    _train(text_project)
    scores = sorted(Sample.objects.filter(project=text_project, status="unlabeled")
                    .values_list("score", flat=True), reverse=True)
    assert sum(s > 1 for s in scores) == 5 and all(0 <= s <= 1 for s in scores[5:])


def test_cold_start_puts_a_diverse_batch_first(project):
    project.batch_size = 4
    project.save()
    for i in range(30):
        ImageSampleFactory(project=project, true_label=i % 3)
    assert pool_cold_start(project=project) == 4
    top = Sample.objects.filter(project=project, score__gt=0)
    assert top.count() == 4


def test_staleness_and_learning_curve(text_project, annotator):
    _train(text_project)
    assert ranking_staleness(project=text_project).labels_since == 0
    sample = Sample.objects.filter(project=text_project, status="unlabeled", split="pool").first()
    label_given(sample=sample, annotator=annotator, value="spam")
    assert ranking_staleness(project=text_project).labels_since == 1
    curve = learning_curve(project=text_project)
    assert len(curve.points) == 1 and curve.polyline


def test_retrains_share_one_featurizer_fit_until_samples_are_added(text_project, monkeypatch):
    from learning.services import featurizers

    fits = []
    fit = featurizers._fitted_featurizer
    monkeypatch.setattr(featurizers, "_fitted_featurizer",
                        lambda project, pool_input: fits.append(len(pool_input)) or fit(project, pool_input))
    _train(text_project)
    _train(text_project)
    assert fits == [80]
    Sample.objects.create(project=text_project, text="new words arrive")
    third = _train(text_project)
    assert fits == [80, 81] and third.status == "ready"
    # The stored pipeline carries the refitted vocabulary.
    model = artifacts.load(path=third.artifact_path, sha256=third.artifact_sha256)
    assert "arrive" in model[0].union_.named_transformers["word"].vocabulary_


def test_rescoring_a_text_pool_transforms_each_text_once(text_project, monkeypatch):
    from learning import features, sparse_cache
    from learning.services import pool_score

    text_project.query_strategy = "margin"
    text_project.save()
    first = _train(text_project)
    unlabeled = Sample.objects.filter(project=text_project, status="unlabeled")
    scores = dict(unlabeled.values_list("pk", "score"))
    transformed = []
    transform = features.TextFeaturizer.transform
    monkeypatch.setattr(features.TextFeaturizer, "transform",
                        lambda self, X: transformed.append(len(X)) or transform(self, X))
    stored = []  # rows featurized by rescoring (the compiled featurizer) and kept
    put = sparse_cache.put
    monkeypatch.setattr(sparse_cache, "put",
                        lambda directory, ids, rows: stored.append(len(ids)) or put(directory, ids, rows))
    assert pool_score(project=text_project, version=first) == 20
    assert transformed == [] and stored == []  # every pool row came from the cache
    assert dict(unlabeled.values_list("pk", "score")) == pytest.approx(scores)
    new = Sample.objects.create(project=text_project, text="free cash prize")
    pool_score(project=text_project, version=first)
    assert stored == [1]  # only the new text
    assert transformed == []  # by the compiled featurizer, not the sklearn one
    assert Sample.objects.get(pk=new.pk).score > 0


def test_random_subset_draws_from_the_pool_whatever_keys_the_test_split_took(project):
    from learning.model_input import model_input_random_subset

    project.kind = Project.Kind.TEXT
    project.save()
    rng = np.random.default_rng(1)
    Sample.objects.bulk_create(
        [Sample(project=project, text=f"t{i}", split=Sample.Split.TEST,
                random_key=float(rng.uniform(0, 0.2))) for i in range(100)]
        + [Sample(project=project, text=f"p{i}", split=Sample.Split.POOL,
                  random_key=float(rng.uniform(0.2, 1))) for i in range(400)])
    ids, texts = model_input_random_subset(project=project, max_rows=100, pool_only=True)
    assert 60 <= len(ids) <= 140 and all(text.startswith("p") for text in texts)
    assert list(ids) == sorted(ids)
    ids, texts = model_input_random_subset(project=project, max_rows=1000)
    assert len(ids) == 500


def test_text_rescoring_still_scores_when_its_rows_cannot_be_kept(text_project, monkeypatch):
    from learning import sparse_cache
    from learning.services import pool_score

    text_project.query_strategy = "margin"
    text_project.save()
    first = _train(text_project)
    Sample.objects.filter(project=text_project, status="unlabeled").update(score=0)

    def gone(*args, **kwargs):
        raise FileNotFoundError("the featurizer's rows were removed by a newer import")

    monkeypatch.setattr(sparse_cache, "put", gone)
    new = Sample.objects.create(project=text_project, text="free cash prize")
    assert pool_score(project=text_project, version=first) == 21
    assert Sample.objects.get(pk=new.pk).score > 0


@pytest.mark.parametrize("numeric_only", [False, True])
def test_tabular_rescoring_through_the_compiled_featurizer_scores_as_the_pipeline(
        tabular_project, monkeypatch, numeric_only):
    from learning import compiled_features
    from learning.services import pool_score

    if numeric_only:  # rows then come from the numeric feature cache
        for sample in Sample.objects.filter(project=tabular_project):
            sample.values.pop("colour")
            sample.save(update_fields=["values"])
        tabular_project.columns = ["x", "y"]
    tabular_project.query_strategy = "margin"
    tabular_project.save()
    version = _train(tabular_project)
    model = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    assert compiled_features.compile_featurizer(model[0]) is not None
    unlabeled = Sample.objects.filter(project=tabular_project, status="unlabeled")
    Sample.objects.filter(pk__in=unlabeled.values("pk")).update(score=0)
    assert pool_score(project=tabular_project, version=version) == 10
    lean_scores = dict(unlabeled.values_list("pk", "score"))
    monkeypatch.setattr(compiled_features, "compile_featurizer", lambda featurizer: None)
    Sample.objects.filter(pk__in=unlabeled.values("pk")).update(score=0)
    pool_score(project=tabular_project, version=version)
    assert dict(unlabeled.values_list("pk", "score")) == pytest.approx(lean_scores, abs=1e-9)
    assert any(score > 0 for score in lean_scores.values())
