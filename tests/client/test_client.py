"""The Python client (client/) against a live server over real HTTP: every method, and an
error of each carrying the API's status and code."""
import io
import zipfile

import pandas as pd
import pytest

from annotation_client import ApiError, Client, Monitoring
from serving.services import api_token_create
from tests.client.conftest import WORDS
from tests.factories import png_bytes
from tests.serving.conftest import train_version

pytestmark = pytest.mark.django_db(transaction=True)


def test_projects(service):
    project, client, _predictor, _person = service
    frame = client.projects()
    assert frame["slug"].tolist() == [project.slug]
    assert frame.loc[0, "kind"] == "text" and frame.loc[0, "served_version"] == 1
    assert client.project(project.slug)["labels"] == ["spam", "ham"]
    with pytest.raises(ApiError) as error:
        client.project("nope")
    assert (error.value.status, error.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as error:
        Client(client.url, "wrong-key").projects()
    assert (error.value.status, error.value.code) == (401, "authentication_failed")


def test_import_a_frame_and_a_file_with_progress(service, tmp_path):
    project, client, predictor, _person = service
    seen = []
    job = client.import_samples(project.slug, pd.DataFrame(
        {"text": ["cash prize", "team lunch"], "external_id": ["n1", "n2"],
         "label": ["spam", None]}), progress=seen.append)
    assert job["status"] == "done" and job["rows_ok"] == 2 and seen[-1]["status"] == "done"
    path = tmp_path / "more.csv"
    path.write_text("text\nfree offer\nreport notes\n")
    assert client.import_samples(project.slug, path, progress=False)["rows_ok"] == 2
    assert client.import_job(project.slug, job["id"])["id"] == job["id"]
    with pytest.raises(ApiError) as error:
        client.import_samples(project.slug, pd.DataFrame({"text": ["x"], "label": ["cat"]}),
                              progress=False)
    assert (error.value.status, error.value.code) == (400, "invalid_import")
    assert "unknown label" in str(error.value.detail["report"])
    with pytest.raises(ApiError) as error:
        predictor.import_samples(project.slug, path, progress=False)
    assert (error.value.status, error.value.code) == (403, "permission_denied")


def test_next_and_label(service):
    project, client, _predictor, person = service
    sample = person.next(project.slug)
    assert sample["id"] and sample["labels"] == ["spam", "ham"]
    label = person.label(project.slug, sample["id"], "spam", duration_ms=900)
    assert label["value"] == "spam" and label["served_version"] == 1
    with pytest.raises(ApiError) as error:
        person.label(project.slug, sample["id"], "cat")
    assert (error.value.status, error.value.code) == (400, "invalid_label")
    with pytest.raises(ApiError) as error:
        client.next(project.slug)  # a project token labels for nobody
    assert error.value.status == 403


def test_predict_lists_frames_and_batches(service):
    project, client, predictor, _person = service
    frame = predictor.predict(project.slug, ["win free cash", "team meeting notes"])
    assert frame["label"].tolist() == ["spam", "ham"]
    assert {"id", "confidence", "model_version", "proba_spam", "proba_ham"} <= set(frame)
    texts = pd.DataFrame({"text": [f"{WORDS['spam' if i % 3 else 'ham']} {i}" for i in range(25)]},
                         index=range(100, 125))
    batched = predictor.predict(project.slug, texts, batch_size=10)
    whole = predictor.predict(project.slug, texts["text"])
    assert list(batched.index) == list(range(100, 125)) and batched["id"].is_unique
    assert batched["label"].tolist() == whole["label"].tolist()
    pd.testing.assert_series_equal(batched["proba_spam"].reset_index(drop=True),
                                   whole["proba_spam"].reset_index(drop=True))
    with pytest.raises(ApiError) as error:
        predictor.predict(project.slug, [{"txt": "typo"}])
    assert (error.value.status, error.value.code) == (400, "invalid_instance")
    assert error.value.detail["index"] == 0
    with pytest.raises(ApiError) as error:
        predictor.predict(project.slug, ["x"], version=9)
    assert (error.value.status, error.value.code) == (404, "unknown_version")


def test_feedback(service):
    project, client, predictor, _person = service
    prediction = client.predict(project.slug, ["free prize"]).iloc[0]
    answer = client.feedback(project.slug, "spam", prediction_id=prediction["id"])
    assert answer["created"] and answer["correct"] == (prediction["label"] == "spam")
    assert client.feedback(project.slug, "ham", instance={"text": "lunch"})["sample_id"]
    with pytest.raises(ApiError) as error:
        client.feedback(project.slug, "spam",
                        prediction_id="00000000-0000-7000-8000-000000000000")
    assert (error.value.status, error.value.code) == (404, "unknown_prediction")
    with pytest.raises(ApiError) as error:
        predictor.feedback(project.slug, "spam", instance={"text": "x"})
    assert error.value.code == "permission_denied"


def test_models_detail_promote_and_export(service):
    project, client, predictor, _person = service
    train_version(project)
    models = client.models(project.slug)
    assert models["number"].tolist() == [2, 1]
    assert str(models["created_at"].dtype).startswith("datetime64")
    assert client.model(project.slug, 1)["metrics"]["labels"] == ["spam", "ham"]
    promoted = client.promote(project.slug, 1, note="back to v1")
    assert promoted["number"] == 1 and promoted["is_served"]
    data = client.export_model(project.slug, 1)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist()
    with pytest.raises(ApiError) as error:
        client.export_model(project.slug, 1, format="onnx")
    assert (error.value.status, error.value.code) == (409, "not_exportable")
    assert error.value.detail == {"reason": "text_featurizer"}
    with pytest.raises(ApiError) as error:
        client.model(project.slug, 7)
    assert (error.value.status, error.value.code) == (404, "unknown_version")
    with pytest.raises(ApiError) as error:
        predictor.promote(project.slug, 2)
    assert (error.value.status, error.value.code) == (403, "permission_denied")


def test_export_model_to_a_path(service, tmp_path):
    project, client, _predictor, _person = service
    path = client.export_model(project.slug, 1, path=tmp_path / "m.zip")
    assert zipfile.is_zipfile(path)


def test_monitoring(service):
    project, client, predictor, _person = service
    predictor.predict(project.slug, ["free cash", "team notes", "prize"])
    report = client.monitoring(project.slug, window="1h")
    assert isinstance(report, Monitoring)
    assert report.summary["rows"] == 3 and report.traffic["rows"].sum() == 3
    assert str(report.traffic["t"].dtype).startswith("datetime64")
    assert set(report.classes["label"]) == {"spam", "ham"}
    assert report.confidence["predictions"].sum() == 3
    with pytest.raises(ApiError) as error:
        client.monitoring(project.slug, window="2h")
    assert (error.value.status, error.value.code) == (400, "invalid")
    with pytest.raises(ApiError) as error:
        predictor.monitoring(project.slug)
    assert error.value.status == 403


def test_labels(service):
    project, client, predictor, _person = service
    labels = client.labels(project.slug)
    assert len(labels) == 40 and set(labels["label"]) == {"spam", "ham"}
    assert {"sample_id", "external_id", "split", "annotator", "labeled_at"} <= set(labels)
    history = client.labels(project.slug, history=True)
    assert {"label_id", "superseded_at", "served_version"} <= set(history)
    with pytest.raises(ApiError) as error:
        predictor.labels(project.slug)
    assert (error.value.status, error.value.code) == (403, "permission_denied")


def test_predict_images_from_bytes_and_a_frame(live_server, served_project, settings):
    settings.API_THROTTLE_RATES = {scope: "100000/min" for scope in settings.API_THROTTLE_RATES}
    _t, key = api_token_create(project=served_project, scopes=["predict"])
    client = Client(live_server.url, key)
    images = [png_bytes(i % 3, seed=900 + i) for i in range(6)]
    from_list = client.predict(served_project.slug, images)
    from_frame = client.predict(served_project.slug,
                                pd.DataFrame({"image": images}, index=list("abcdef")))
    assert list(from_frame.index) == list("abcdef")
    assert from_frame["label"].tolist() == from_list["label"].tolist()
    assert {"proba_0", "proba_1", "proba_2"} <= set(from_frame)
    with pytest.raises(ApiError) as error:
        client.predict(served_project.slug, [b"not an image"])
    assert (error.value.status, error.value.code) == (400, "invalid_instance")
