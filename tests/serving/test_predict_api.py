"""The predict API: token scoping, JSON errors for bad input, predictions naming the version."""
import base64

import pytest
from rest_framework.test import APIClient

from learning import artifacts
from learning.models import ModelVersion
from learning.services import model_version_request, model_version_train
from serving.models import PredictionLog
from serving.services import api_token_create
from tests.factories import ProjectFactory, png_bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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


def test_token_of_another_project_is_the_404_of_an_unknown_project(served_project):
    _token, key = api_token_create(project=ProjectFactory(), scopes=["predict"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    body = {"instances": [{"image_base64": _b64(png_bytes(0))}]}
    response = _predict(client, served_project, body)
    assert response.status_code == 404 and "can reach" in response.json()["error"]
    slug = served_project.slug
    served_project.slug = "no-such-project"  # the same request to a slug that does not exist
    unknown = _predict(client, served_project, body)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == response.json()["error"].replace(slug, "no-such-project")


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


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_each_prediction_has_an_id_stored_on_its_log_row(served_project, client_with_token):
    response = _predict(client_with_token, served_project,
                        {"instances": [{"image_base64": _b64(png_bytes(1, seed=3))}] * 2})
    ids = [p["id"] for p in response.json()["predictions"]]
    assert len(set(ids)) == 2
    logged = set(PredictionLog.objects.values_list("prediction_id", flat=True))
    assert {str(i) for i in logged} == set(ids)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"instances": [{"image_base64": _b64(png_bytes(0))}], "extra": 1, "more": 2},
         "unknown field(s) 'extra', 'more'"),
        ({"instances": [{"image_base64": _b64(png_bytes(0)), "colour": "red"}]},
         "instances[0]: unknown field(s) 'colour'"),
        ({"instances": [1]}, "instances"),
        ({"instances": [{"image_base64": 5}]}, "base64 string"),
        ({"instances": [{"image": "abc"}]}, "multipart file field"),
        ([1, 2], "Expected a dictionary"),
        ({"instances": [{"image_base64": _b64(_bomb_png())}]}, "pixels"),
    ],
)
def test_more_bad_input_is_a_400_naming_the_problem(served_project, client_with_token, body, fragment):
    response = _predict(client_with_token, served_project, body)
    assert response.status_code == 400, response.content
    assert fragment in response.json()["error"]


def test_batch_over_the_total_pixel_budget_is_a_400(served_project, client_with_token, settings):
    settings.PREDICT_MAX_TOTAL_PIXELS = 100  # two 8x8 images are 128 pixels
    response = _predict(client_with_token, served_project,
                        {"instances": [{"image_base64": _b64(png_bytes(0))}] * 2})
    assert response.status_code == 400 and "instances[1]" in response.json()["error"]


def test_oversized_body_is_a_413_before_parsing(served_project, client_with_token, settings):
    settings.API_MAX_BODY_BYTES = 100
    response = client_with_token.post(f"/api/v1/projects/{served_project.slug}/predict",
                                      "{" + " " * 200, content_type="application/json")
    assert response.status_code == 413  # the body is not even valid JSON: never parsed
    body = response.json()
    assert "over the limit of 100 bytes" in body["error"]
    assert body["detail"] == {"content_length": 201, "max_body_bytes": 100}


def test_unsupported_media_type_is_a_415_json(served_project, client_with_token):
    response = client_with_token.post(f"/api/v1/projects/{served_project.slug}/predict",
                                      "hello", content_type="text/plain")
    assert response.status_code == 415 and "text/plain" in response.json()["error"]


def test_multipart_images_predict_like_base64(served_project, client_with_token):
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(f"{i}.png", png_bytes(i, seed=1), content_type="image/png")
             for i in (2, 0)]
    response = client_with_token.post(f"/api/v1/projects/{served_project.slug}/predict",
                                      {"image": files}, format="multipart")
    assert response.status_code == 200, response.content
    assert [p["label"] for p in response.json()["predictions"]] == ["2", "0"]


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({}, "image"),
        ({"image": "not a file"}, "not a file"),
        ({"image": "bomb", "caption": "x"}, "unknown field(s) 'caption'"),
        ({"image": "text"}, "not a decodable image"),
    ],
)
def test_bad_multipart_is_a_400(served_project, client_with_token, data, fragment):
    from django.core.files.uploadedfile import SimpleUploadedFile

    if data.get("image") == "bomb":
        data["image"] = SimpleUploadedFile("b.png", _bomb_png(), content_type="image/png")
    elif data.get("image") == "text":
        data["image"] = SimpleUploadedFile("t.png", b"hello", content_type="image/png")
    response = client_with_token.post(f"/api/v1/projects/{served_project.slug}/predict",
                                      data, format="multipart")
    assert response.status_code == 400, response.content
    assert fragment in response.json()["error"]


def test_version_query_pins_a_ready_version(served_project, client_with_token):
    from tests.serving.conftest import train_version

    first = ModelVersion.objects.get(is_served=True)
    second = train_version(served_project)
    assert second.is_served
    body = {"instances": [{"image_base64": _b64(png_bytes(1))}]}
    url = f"/api/v1/projects/{served_project.slug}/predict"
    pinned = client_with_token.post(f"{url}?version={first.number}", body, format="json")
    assert pinned.status_code == 200 and pinned.json()["model_version"] == first.number
    assert PredictionLog.objects.get(outcome="ok").model_version_id == first.pk
    assert _predict(client_with_token, served_project, body).json()["model_version"] == second.number


@pytest.mark.parametrize(
    "query, status, fragment",
    [
        ("version=99", 404, "no model version 99"),
        ("version=2", 409, "training, not ready"),
        ("version=abc", 400, "version"),
        ("version=0", 400, "version"),
        ("version=99999999999999999999", 400, "version"),
        ("verison=1", 400, "unknown field(s) 'verison'"),
    ],
)
def test_bad_version_pins(served_project, client_with_token, query, status, fragment):
    ModelVersion.objects.create(project=served_project, number=2, status="training")
    response = client_with_token.post(f"/api/v1/projects/{served_project.slug}/predict?{query}",
                                      {"instances": [{"image_base64": _b64(png_bytes(1))}]},
                                      format="json")
    assert response.status_code == status, response.content
    assert fragment in response.json()["error"]


def test_revoked_token_is_a_401(served_project, client_with_token):
    from serving.services import api_token_revoke

    body = {"instances": [{"image_base64": _b64(png_bytes(1))}]}
    assert _predict(client_with_token, served_project, body).status_code == 200
    api_token_revoke(token=client_with_token.token)
    response = _predict(client_with_token, served_project, body)
    assert response.status_code == 401 and "revoked" in response.json()["error"]


def test_an_unexpected_error_is_a_logged_json_500(served_project, client_with_token, monkeypatch,
                                                 caplog):
    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("serving.apis.predict.predict", explode)
    response = _predict(client_with_token, served_project,
                        {"instances": [{"image_base64": _b64(png_bytes(1))}]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error", "code": "server_error",
                               "detail": None}
    assert "boom" not in response.content.decode()
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
    assert PredictionLog.objects.filter(outcome="server_error").count() == 1
