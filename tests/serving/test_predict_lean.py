"""Tabular and text predictions go through the compiled featurizer: the artifact's own
probabilities, one row or a batch, and a 400 naming the cell for values it cannot use."""
import numpy as np
import pytest

from annotation.models import Project, Sample
from learning import artifacts
from serving import model_cache
from serving.services import api_token_create
from tests.factories import label_given
from tests.serving.conftest import train_version
from rest_framework.test import APIClient


def _client(project):
    _token, key = api_token_create(project=project, scopes=["predict"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _rows(rng, n):
    rows = []
    for i in range(n):
        label = "a" if i % 2 else "b"
        row = {f"x{k}": float(rng.normal(2 if label == "a" else -2)) for k in range(6)}
        row["colour"] = ["red", "blue", None][i % 3]
        row["size"] = ["S", "M", "L", None][i % 4]
        if i % 5 == 0:
            row["x3"] = None
        rows.append((row, label))
    return rows


@pytest.fixture
def tabular(db, project, annotator):
    project.kind = Project.Kind.TABULAR
    project.labels = ["a", "b"]
    project.columns = [*(f"x{k}" for k in range(6)), "colour", "size"]
    project.batch_size = 1000
    project.save()
    for i, (row, label) in enumerate(_rows(np.random.default_rng(0), 60)):
        sample = Sample.objects.create(project=project, values=row,
                                       split="test" if i >= 45 else "pool")
        label_given(sample=sample, annotator=annotator, value=label)
    version = train_version(project)
    assert version.is_served, version.error
    model_cache.clear()
    return project, artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)


def _proba(response):
    return np.array([[p["probabilities"][k] for k in ("a", "b")]
                     for p in response.json()["predictions"]])


@pytest.mark.parametrize("n", [1, 3, 100])
def test_tabular_predictions_equal_the_artifacts_own(tabular, n):
    project, estimator = tabular
    rows = [row for row, _label in _rows(np.random.default_rng(n), n)]
    rows[0]["colour"] = "never seen"
    response = _client(project).post(f"/api/v1/projects/{project.slug}/predict",
                                     {"instances": rows}, format="json")
    assert response.status_code == 200, response.content
    np.testing.assert_allclose(_proba(response), estimator.predict_proba(rows), atol=1e-9)


@pytest.mark.parametrize("value", ["abc", "NaN", "inf", "-Infinity", "1e400"])
def test_tabular_non_numbers_and_infinities_are_a_400_naming_the_cell(tabular, value):
    project, _estimator = tabular
    rows = [row for row, _label in _rows(np.random.default_rng(1), 3)]
    rows[2]["x1"] = value
    response = _client(project).post(f"/api/v1/projects/{project.slug}/predict",
                                     {"instances": rows}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_instance"
    assert body["error"] == "instances[2]: column 'x1' must be a finite number or null"
    assert body["detail"] == {"index": 2, "column": "x1"}


def test_tabular_wrong_types_and_columns_keep_their_messages(tabular):
    project, _estimator = tabular
    row = dict(_rows(np.random.default_rng(2), 1)[0][0])
    client = _client(project)
    url = f"/api/v1/projects/{project.slug}/predict"
    nested = client.post(url, {"instances": [{**row, "x0": [1]}]}, format="json").json()
    assert nested["error"] == "instances[0]: column 'x0' must be a number, a string or null"
    del row["size"]
    missing = client.post(url, {"instances": [row]}, format="json").json()
    assert missing["code"] == "invalid_instance" and missing["detail"]["missing"] == ["size"]


def test_text_predictions_equal_the_artifacts_own(db, project, annotator):
    project.kind = Project.Kind.TEXT
    project.labels = ["spam", "ham"]
    project.batch_size = 1000
    project.save()
    words = {"spam": "win prize cash free offer", "ham": "meeting lunch report team notes"}
    rng = np.random.default_rng(0)
    for i in range(50):
        label = ["spam", "ham"][i % 2]
        text = " ".join(rng.choice(words[label].split(), 4))
        sample = Sample.objects.create(project=project, text=text,
                                       split="test" if i >= 40 else "pool")
        label_given(sample=sample, annotator=annotator, value=label)
    version = train_version(project)
    model_cache.clear()
    estimator = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    texts = ["free cash", "team lunch report", "", "nothing known here", "Win! PRIZE?"]
    response = _client(project).post(f"/api/v1/projects/{project.slug}/predict",
                                     {"instances": [{"text": t} for t in texts]}, format="json")
    assert response.status_code == 200, response.content
    got = np.array([[p["probabilities"][k] for k in ("spam", "ham")]
                    for p in response.json()["predictions"]])
    want = estimator.predict_proba(texts)
    order = [list(estimator.classes_).index(k) for k in ("spam", "ham")]
    np.testing.assert_allclose(got, want[:, order], atol=1e-9)
    lean = model_cache.served_model(project_id=project.pk).predict_proba
    assert lean is not estimator.predict_proba  # the compiled path served it
