"""Model version APIs: list, detail, promote (roll back and forward), scopes and errors."""
import pytest

from learning.models import ModelVersion
from tests.factories import ProjectFactory
from tests.serving.conftest import train_version


def _url(project, suffix=""):
    return f"/api/v1/projects/{project.slug}/models{suffix}"


@pytest.fixture
def two_versions(served_project):
    return ModelVersion.objects.get(number=1), train_version(served_project)


def test_list_shows_every_version_newest_first(served_project, two_versions, token_client):
    response = token_client(served_project).get(_url(served_project))
    assert response.status_code == 200, response.content
    rows = response.json()
    assert [r["number"] for r in rows] == [2, 1]
    assert set(rows[0]) == {"number", "status", "accuracy", "macro_f1", "trained_on_label_count",
                            "is_served", "created_at"}
    assert [r["is_served"] for r in rows] == [True, False]
    assert rows[0]["trained_on_label_count"] == 30 and rows[0]["status"] == "ready"


def test_detail_shows_metrics_provenance_timings_and_artifact(served_project, token_client):
    version = ModelVersion.objects.get(number=1)
    response = token_client(served_project, scopes=["feedback"]).get(_url(served_project, "/1"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["metrics"]["labels"] == ["0", "1", "2"]
    assert len(body["metrics"]["confusion_matrix"]) == 3
    assert set(body["metrics"]["per_class"]["0"]) == {"precision", "recall", "f1", "support"}
    assert body["metrics"]["accuracy"] == version.accuracy
    assert body["labels_trained_on"] == {"count": 30, "last_label_id": version.last_label_id,
                                         "snapshot_sha256": version.label_snapshot_sha256}
    assert body["timings"]["fit_seconds"] == version.fit_seconds
    assert body["artifact_sha256"] == version.artifact_sha256
    assert "artifact_path" not in body
    assert body["error"] == "" and body["promotion_note"] == "first ready model"


def test_detail_of_a_queued_version_has_null_metrics(served_project, token_client):
    ModelVersion.objects.create(project=served_project, number=2)
    body = token_client(served_project).get(_url(served_project, "/2")).json()
    assert body["status"] == "queued"
    assert body["metrics"]["confusion_matrix"] is None and body["metrics"]["accuracy"] is None


@pytest.mark.parametrize("suffix", ["/9", "/0", "/99999999999999999999"])
def test_unknown_version_is_a_404(served_project, token_client, suffix):
    response = token_client(served_project).get(_url(served_project, suffix))
    assert response.status_code == 404 and "no model version" in response.json()["error"]


def test_promote_rolls_back_and_forward(served_project, two_versions, token_client):
    first, second = two_versions
    admin = token_client(served_project, scopes=["admin"])
    response = admin.post(_url(served_project, "/1/promote"), {"note": "back to v1"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"number": 1, "is_served": True, "promotion_note": "back to v1",
                               "previous_version": 2}
    assert ModelVersion.objects.get(is_served=True).pk == first.pk
    predictor = token_client(served_project)
    from tests.serving.test_predict_api import _b64, _predict
    from tests.factories import png_bytes

    body = {"instances": [{"image_base64": _b64(png_bytes(1))}]}
    assert _predict(predictor, served_project, body).json()["model_version"] == 1
    response = admin.post(_url(served_project, "/2/promote"), format="json")
    assert response.status_code == 200 and response.json()["previous_version"] == 1
    assert "promoted through the API" in response.json()["promotion_note"]
    assert _predict(predictor, served_project, body).json()["model_version"] == 2


@pytest.mark.parametrize("status", ["queued", "training", "failed"])
def test_promoting_a_version_that_is_not_ready_is_a_409(served_project, token_client, status):
    ModelVersion.objects.create(project=served_project, number=2, status=status)
    response = token_client(served_project, scopes=["admin"]).post(
        _url(served_project, "/2/promote"), format="json")
    assert response.status_code == 409 and f"is {status}, not ready" in response.json()["error"]
    assert ModelVersion.objects.get(is_served=True).number == 1


def test_promoting_a_tampered_version_is_a_409_and_keeps_serving(served_project, two_versions,
                                                                 token_client):
    from learning import artifacts

    first, _second = two_versions
    (artifacts.artifact_root() / first.artifact_path).write_bytes(b"tampered")
    response = token_client(served_project, scopes=["admin"]).post(
        _url(served_project, "/1/promote"), format="json")
    assert response.status_code == 409 and "integrity" in response.json()["error"]
    assert ModelVersion.objects.get(is_served=True).number == 2
    first.refresh_from_db()
    assert first.error.startswith("serving refused artifact")


@pytest.mark.parametrize(
    "body, fragment",
    [({"force": True}, "unknown field(s) 'force'"), ({"note": 5 * [1]}, "note"),
     ({"note": "x" * 1001}, "note")],
)
def test_promote_bad_body_is_a_400(served_project, token_client, body, fragment):
    response = token_client(served_project, scopes=["admin"]).post(
        _url(served_project, "/1/promote"), body, format="json")
    assert response.status_code == 400 and fragment in response.json()["error"]


def test_promote_unknown_version_is_a_404(served_project, token_client):
    response = token_client(served_project, scopes=["admin"]).post(
        _url(served_project, "/7/promote"), format="json")
    assert response.status_code == 404


def test_promote_needs_the_admin_scope(served_project, token_client):
    response = token_client(served_project, scopes=["predict", "feedback"]).post(
        _url(served_project, "/1/promote"), format="json")
    assert response.status_code == 403 and "'admin' scope" in response.json()["error"]


@pytest.mark.parametrize("method, suffix", [("get", ""), ("get", "/1"), ("post", "/1/promote"),
                                            ("post", "/../predict")])
def test_a_token_of_another_project_gets_the_404_of_an_unknown_one_everywhere(
        served_project, token_client, method, suffix):
    other = token_client(ProjectFactory(), scopes=["predict", "feedback", "admin"])
    url = _url(served_project, suffix).replace("/models/../", "/")
    response = getattr(other, method)(url, {}, format="json")
    unknown = getattr(other, method)(url.replace(served_project.slug, "no-such-project"), {},
                                     format="json")
    assert response.status_code == unknown.status_code == 404
    assert response.json()["error"].replace(served_project.slug, "?") == \
        unknown.json()["error"].replace("no-such-project", "?")
    assert "model_version" not in response.json() and "number" not in response.json()


def test_personal_tokens_do_not_read_model_versions(served_project):
    from rest_framework.test import APIClient

    from annotation.services import personal_token_create
    from tests.factories import MembershipFactory, UserFactory

    user = UserFactory()
    MembershipFactory(project=served_project, user=user, role="annotator")
    _token, key = personal_token_create(project=served_project, user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    for suffix in ("", "/1"):
        response = client.get(_url(served_project, suffix))
        assert response.status_code == 403 and "scope" in response.json()["error"]


@pytest.mark.parametrize("method, suffix", [("get", ""), ("get", "/1"), ("post", "/1/promote")])
def test_no_token_is_a_401(served_project, client, method, suffix):
    response = getattr(client, method)(_url(served_project, suffix))
    assert response.status_code == 401 and response.json()["error"]
    assert response["WWW-Authenticate"] == "Token"
