"""The predict API: token scoping, JSON errors for bad input, predictions naming the version."""
import base64

import pytest
from rest_framework.test import APIClient

from annotation.services import label_submit
from learning import artifacts
from learning.models import ModelVersion
from learning.services import model_version_request, model_version_train
from serving.models import PredictionLog
from serving.services import api_token_create
from tests.factories import ProjectFactory, png_bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def served_project(project, annotator, make_samples):
    project.batch_size = 1000
    project.save()
    for i, sample in enumerate(make_samples(30, 9)):
        label_submit(sample=sample, annotator=annotator, value=project.labels[i % 3])
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    return project


@pytest.fixture
def client_with_token(served_project):
    _token, key = api_token_create(project=served_project, scopes=["predict"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _predict(client, project, body, **extra):
    return client.post(f"/api/v1/projects/{project.slug}/predict", body, format="json", **extra)


def test_predict_returns_label_confidence_probabilities_and_version(served_project, client_with_token):
    response = _predict(client_with_token, served_project,
                        {"instances": [{"image_base64": _b64(png_bytes(2, seed=1))},
                                       {"image_base64": _b64(png_bytes(0, seed=2))}]})
    assert response.status_code == 200, response.content
    body = response.json()
    served = ModelVersion.objects.get(is_served=True)
    assert body["model_version"] == served.number
    assert [p["label"] for p in body["predictions"]] == ["2", "0"]
    first = body["predictions"][0]
    assert set(first["probabilities"]) == {"0", "1", "2"}
    assert first["confidence"] == max(first["probabilities"].values())
    logs = PredictionLog.objects.filter(outcome="ok")
    assert logs.count() == 2 and {log.model_version_id for log in logs} == {served.pk}


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("{not json", "JSON parse error"),
        ({}, "instances"),
        ({"instances": []}, "instances"),
        ({"instances": "x"}, "instances"),
        ({"instances": [{"text": "hi"}]}, "image_base64"),
        ({"instances": [{"image_base64": "@@@"}]}, "not valid base64"),
        ({"instances": [{"image_base64": _b64(b"hello")}]}, "not a decodable image"),
    ],
)
def test_bad_input_is_a_400_with_json_error(served_project, client_with_token, body, fragment):
    if isinstance(body, str):
        response = client_with_token.post(f"/api/v1/projects/{served_project.slug}/predict", body,
                                          content_type="application/json")
    else:
        response = _predict(client_with_token, served_project, body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert PredictionLog.objects.filter(outcome="client_error").count() == 1


def test_too_many_instances_is_a_400(served_project, client_with_token, settings):
    settings.PREDICT_MAX_INSTANCES = 2
    response = _predict(client_with_token, served_project,
                        {"instances": [{"image_base64": _b64(png_bytes(0))}] * 3})
    assert response.status_code == 400 and "at most 2" in response.json()["error"]


def test_missing_or_wrong_token_is_a_401_with_json(served_project):
    client = APIClient()
    response = _predict(client, served_project, {"instances": []})
    assert response.status_code == 401 and response.json()["error"]
    assert response["WWW-Authenticate"] == "Token"
    client.credentials(HTTP_AUTHORIZATION="Token nope")
    assert _predict(client, served_project, {"instances": []}).status_code == 401


def test_token_of_another_project_is_a_403(served_project):
    _token, key = api_token_create(project=ProjectFactory(), scopes=["predict"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = _predict(client, served_project, {"instances": [{"image_base64": _b64(png_bytes(0))}]})
    assert response.status_code == 403 and "another project" in response.json()["error"]


def test_token_without_predict_scope_is_a_403(served_project):
    _token, key = api_token_create(project=served_project, scopes=["feedback"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = _predict(client, served_project, {"instances": [{"image_base64": _b64(png_bytes(0))}]})
    assert response.status_code == 403


def test_unknown_project_is_a_404(client_with_token):
    response = client_with_token.post("/api/v1/projects/nope/predict", {"instances": []}, format="json")
    assert response.status_code == 404 and response.json()["error"]


def test_project_without_model_is_a_409(project):
    _token, key = api_token_create(project=project, scopes=["predict"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = _predict(client, project, {"instances": [{"image_base64": _b64(png_bytes(0))}]})
    assert response.status_code == 409 and "no served model" in response.json()["error"]


def test_tampered_artifact_keeps_previous_model_serving(served_project, client_with_token):
    body = {"instances": [{"image_base64": _b64(png_bytes(1))}]}
    old = ModelVersion.objects.get(is_served=True)
    assert _predict(client_with_token, served_project, body).json()["model_version"] == old.number
    newer = model_version_request(project=served_project)
    model_version_train(version_id=newer.pk)
    newer.refresh_from_db()
    assert newer.is_served
    path = artifacts.artifact_root() / newer.artifact_path
    path.write_bytes(b"tampered")
    response = _predict(client_with_token, served_project, body)
    assert response.status_code == 200 and response.json()["model_version"] == old.number
