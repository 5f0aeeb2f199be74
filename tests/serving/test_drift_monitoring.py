"""Input drift end to end on SQLite: a reference kept at training time, production inputs sent
through the predict API, the verdict in the monitoring JSON and page; bad inputs, missing
or refused references and the cache."""
import io
import uuid

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from annotation.models import Project, Sample
from learning.models import DriftReference
from serving import drift, prediction_log
from serving.drift_selectors import MIN_ROWS
from serving.services import Prediction
from tests.factories import label_given, png_bytes
from tests.serving.conftest import image_project_trained, train_version

pytestmark = pytest.mark.django_db

DRIFT_KEYS = {"drifted", "share", "n", "reference_n", "method", "features"}
FEATURE_KEYS = {"name", "method", "score", "threshold", "drifted"}
WORDS = {"spam": ["win", "prize", "cash", "free", "offer"],
         "ham": ["meeting", "lunch", "report", "team", "notes"]}


def _row(rng, *, shift=0.0, green=0.2):
    shares = [(1 - green) * 5 / 8, (1 - green) * 3 / 8, green]
    colour = rng.choice(["red", "blue", "green"], p=shares)
    return {"x": float(rng.normal(shift, 1)), "y": float(rng.normal(5, 2)), "colour": str(colour)}


@pytest.fixture
def tabular(project, annotator):
    project.kind, project.labels = Project.Kind.TABULAR, ["a", "b"]
    project.columns = ["x", "y", "colour"]
    project.batch_size = 1000
    project.save()
    rng = np.random.default_rng(0)
    for i in range(300):
        values = _row(rng)
        split = Sample.Split.TEST if 40 <= i < 60 else Sample.Split.POOL
        sample = Sample.objects.create(project=project, values=values, split=split)
        if i < 60:
            label_given(sample=sample, annotator=annotator, value="a" if values["x"] > 0 else "b")
    train_version(project)
    return project


def _text(rng, label):
    return " ".join(rng.choice(WORDS[label], 4))


@pytest.fixture
def text(project, annotator):
    project.kind, project.labels, project.batch_size = Project.Kind.TEXT, ["spam", "ham"], 1000
    project.save()
    rng = np.random.default_rng(0)
    for i in range(120):
        label = "spam" if i % 2 else "ham"
        split = Sample.Split.TEST if 44 <= i < 60 else Sample.Split.POOL
        sample = Sample.objects.create(project=project, text=_text(rng, label), split=split)
        if i < 60:
            label_given(sample=sample, annotator=annotator, value=label)
    train_version(project)
    return project


def _pixels(value, seed, *, invert=False):
    pixels = np.asarray(Image.open(io.BytesIO(png_bytes(value, seed=seed))), dtype=int)
    return (255 - pixels if invert else pixels).reshape(-1).tolist()


@pytest.fixture
def images(project, annotator, make_samples):
    return image_project_trained(project, annotator, make_samples, unlabeled=60)


def _predict(client, project, instances):
    response = client.post(f"/api/v1/projects/{project.slug}/predict", {"instances": instances},
                           format="json")
    assert response.status_code == 200, response.content


def _drift(client, project, **query):
    cache.clear()  # the drift of a window is kept for a minute: read it afresh
    response = client.get(f"/api/v1/projects/{project.slug}/monitoring", {"window": "1h", **query})
    assert response.status_code == 200, response.content
    data = response.json()
    if data["drift"] is not None:
        assert set(data["drift"]) == DRIFT_KEYS
        assert all(set(f) == FEATURE_KEYS for f in data["drift"]["features"])
        assert data["drift_note"] is None
    return data


def test_tabular_inputs_from_training_pass_and_shifted_ones_drift(tabular, token_client):
    reference = DriftReference.objects.get(version__project=tabular)
    assert reference.kind == "columns" and reference.rows == 300 and not reference.basis_path
    client, monitor = token_client(tabular), token_client(tabular, scopes=("monitor",))
    rng = np.random.default_rng(11)
    _predict(client, tabular, [_row(rng) for _ in range(100)])

    data = _drift(monitor, tabular)
    result = data["drift"]
    assert result["n"] == 100 and result["reference_n"] == 300
    assert result["drifted"] is False, result
    assert {f["name"]: f["method"] for f in result["features"]} == {
        "x": drift.KS, "y": drift.KS, "colour": drift.CHI_SQUARE}

    _predict(client, tabular, [_row(rng, shift=1.0, green=0.6) for _ in range(300)])
    result = _drift(monitor, tabular)["drift"]
    assert result["n"] == 400 and result["drifted"] is True
    flagged = {f["name"] for f in result["features"] if f["drifted"]}
    assert flagged == {"x", "colour"} and result["share"] == round(2 / 3, 4)
    assert "per column" in result["method"]


def test_text_inputs_drift_on_new_vocabulary(text, token_client):
    reference = DriftReference.objects.get(version__project=text)
    names = [f["name"] for f in reference.features]
    assert names[0] == "PC1" and names[-1] == "confidence" and reference.rows == 120
    client, monitor = token_client(text), token_client(text, scopes=("monitor",))
    rng = np.random.default_rng(5)
    _predict(client, text, [{"text": _text(rng, ("spam", "ham")[i % 2])} for i in range(60)])
    result = _drift(monitor, text)["drift"]
    assert result["n"] == 60 and result["drifted"] is False, result
    assert "TF-IDF" in result["method"]

    strange = ["zebra quantum violin harbor", "glacier saxophone nebula", "orbit lantern fjord"]
    _predict(client, text, [{"text": f"{strange[i % 3]} {i}"} for i in range(120)])
    result = _drift(monitor, text)["drift"]
    assert result["n"] == 180 and result["drifted"] is True, result
    assert {f["name"] for f in result["features"]} >= {"PC1", "confidence"}


def test_image_inputs_drift_when_inverted(images, token_client):
    client, monitor = token_client(images), token_client(images, scopes=("monitor",))
    _predict(client, images, [{"pixels": _pixels(i % 3, 1000 + i)} for i in range(60)])
    result = _drift(monitor, images)["drift"]
    assert result["n"] == 60 and result["drifted"] is False, result
    assert "pixels" in result["method"]
    assert any(f["name"] == "confidence" for f in result["features"])

    _predict(client, images,
             [{"pixels": _pixels(i % 3, 2000 + i, invert=True)} for i in range(120)])
    result = _drift(monitor, images)["drift"]
    assert result["n"] == 180 and result["drifted"] is True, result


def _logged(project, instances, *, confidence=0.8):
    version = project.model_versions.get()
    predictions = [Prediction(id=str(uuid.uuid4()), label=project.labels[0],
                              confidence=confidence, probabilities={}) for _ in instances]
    prediction_log.prediction_log_write([prediction_log.RequestLog(
        project_id=project.pk, token_id=None, status_code=200, latency_ms=5.0,
        created_at=timezone.now(), model_version_id=version.pk, predictions=predictions,
        instances=instances)])


BAD = ["a string", [1, 2], 7, None, {"pixels": "x"}, {"image_base64": "!!"},
       {"pixels": [300] * 64}, {"text": 5}, {"other": "x"}, {"x": {"nested": 1}},
       {"x": "abc", "y": True, "colour": 5}, {"text": "\ufffd" * 3}]


def _good(kind, i):
    rng = np.random.default_rng(i)
    if kind == "tabular":
        return _row(rng)
    if kind == "text":
        return {"text": _text(rng, "spam")}
    return {"pixels": _pixels(i % 3, i)}


@pytest.mark.parametrize("kind", ["tabular", "text", "images"])
def test_bad_and_missing_instances_never_crash_and_are_left_out(kind, request, token_client):
    project = request.getfixturevalue(kind)
    monitor = token_client(project, scopes=("monitor",))
    _logged(project, [_good(kind, i) for i in range(MIN_ROWS - 2)] + BAD)
    data = _drift(monitor, project)
    assert data["drift"] is None and data["drift_note"].startswith("not enough data")
    _logged(project, [_good(kind, i) for i in range(40)])
    data = _drift(monitor, project)
    # A row with one usable column; a string text (U+FFFD is one); a readable image.
    readable = {"tabular": MIN_ROWS - 2 + 40 + 1, "text": MIN_ROWS - 2 + 40 + 1,
                "images": MIN_ROWS - 2 + 40}[kind]
    assert data["drift"] is not None and data["drift"]["n"] == readable


def test_without_a_reference_the_page_says_so_and_the_command_builds_one(images, token_client,
                                                                         client):
    monitor = token_client(images, scopes=("monitor",))
    _logged(images, [_good("images", i) for i in range(40)])
    DriftReference.objects.all().delete()
    data = _drift(monitor, images)
    assert data["drift"] is None and data["drift_note"].startswith("no reference for v1")
    client.force_login(images.owner)
    html = client.get(f"/projects/{images.slug}/monitoring/?window=1h").content.decode()
    assert "no reference for v1" in html and "manage.py drift_reference" in html

    out = io.StringIO()
    call_command("drift_reference", images.slug, stdout=out)
    assert out.getvalue().startswith("v1: 99 random samples; 10 principal components of 64")
    assert _drift(monitor, images)["drift"]["n"] == 40


def test_a_tampered_reference_is_refused_not_read(images, token_client, settings):
    monitor = token_client(images, scopes=("monitor",))
    _logged(images, [_good("images", i) for i in range(40)])
    reference = DriftReference.objects.get()
    path = settings.ARTIFACT_ROOT / reference.basis_path
    path.write_bytes(path.read_bytes() + b"x")
    data = _drift(monitor, images)
    assert data["drift"] is None and "refused" in data["drift_note"]


def test_the_result_is_kept_for_a_minute_per_version_and_window(tabular, token_client, settings):
    monitor = token_client(tabular, scopes=("monitor",))
    _logged(tabular, [_good("tabular", i) for i in range(40)])
    first = _drift(monitor, tabular)["drift"]
    _logged(tabular, [_good("tabular", i) for i in range(10)])
    url = f"/api/v1/projects/{tabular.slug}/monitoring"
    assert monitor.get(url, {"window": "1h"}).json()["drift"]["n"] == first["n"] == 40
    assert monitor.get(url, {"window": "24h"}).json()["drift"]["n"] == 50  # its own entry
    settings.MONITORING_DRIFT_CACHE_SECONDS = 0
    assert monitor.get(url, {"window": "1h"}).json()["drift"]["n"] == 50


def test_a_version_that_is_not_ready_has_no_drift(tabular, token_client):
    version = tabular.model_versions.get()
    version.status = "failed"
    version.save()
    data = _drift(token_client(tabular, scopes=("monitor",)), tabular, version=version.number)
    assert data["drift"] is None
    assert data["drift_note"] == f"v{version.number} is failed: no model to compare with"


def test_the_page_shows_the_verdict_and_each_feature(tabular, token_client, client):
    _predict(token_client(tabular), tabular,
             [_row(np.random.default_rng(i), shift=2.0, green=0.9) for i in range(60)])
    client.force_login(tabular.owner)
    html = client.get(f"/projects/{tabular.slug}/monitoring/?window=1h").content.decode()
    data = _drift(token_client(tabular, scopes=("monitor",)), tabular)["drift"]
    assert data["drifted"] is True
    assert "Dataset drift detected" in html and 'id="monitoring-drift-features"' in html
    for feature in data["features"]:
        assert f'data-feature="{feature["name"]}"' in html
        assert f'<td data-field="drift.score">{feature["score"]:g}</td>' in html
    assert "K-S p-value" in html and "&lt; 0.05" in html


def test_a_stale_result_is_answered_at_once_and_refreshed_behind_it(tabular, token_client,
                                                                    settings, monkeypatch):
    from serving import drift_selectors

    refreshed = []
    monkeypatch.setattr(drift_selectors, "_refresh_later",
                        lambda *args: refreshed.append(args) or drift_selectors._refresh(*args))
    monitor = token_client(tabular, scopes=("monitor",))
    url = f"/api/v1/projects/{tabular.slug}/monitoring"
    _logged(tabular, [_good("tabular", i) for i in range(40)])
    cache.clear()
    assert monitor.get(url, {"window": "1h"}).json()["drift"]["n"] == 40 and not refreshed
    _logged(tabular, [_good("tabular", i) for i in range(10)])
    key = f"monitoring-drift:{tabular.pk}:{tabular.model_versions.get().pk}:1h"
    computed_at, result = cache.get(key)
    cache.set(key, (computed_at - settings.MONITORING_DRIFT_CACHE_SECONDS, result))  # stale
    assert monitor.get(url, {"window": "1h"}).json()["drift"]["n"] == 40  # the kept one
    assert len(refreshed) == 1
    assert monitor.get(url, {"window": "1h"}).json()["drift"]["n"] == 50  # refreshed
    assert len(refreshed) == 1 and cache.get(f"{key}:refreshing") is None


def test_inputs_of_another_width_than_the_reference_are_named_not_a_crash(images, token_client):
    monitor = token_client(images, scopes=("monitor",))
    images.image_size = 4  # a settings change after training: 16 pixels, the reference 64
    images.save()
    _logged(images, [{"pixels": [i % 200] * 16} for i in range(40)])
    data = _drift(monitor, images)
    assert data["drift"] is None and "16 features, the reference has 64" in data["drift_note"]
