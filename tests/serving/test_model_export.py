"""Exported models answer as the predict API does: MLflow (loaded by mlflow-skinny in its own
venv) and ONNX (onnxruntime), on 100 inputs per data kind; and the export's refusals."""
import base64
import io
import json
import zipfile

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from annotation.models import Project, Sample
from learning import features
from learning.models import ModelVersion
from tests.factories import MembershipFactory, UserFactory, label_given, png_bytes
from tests.serving.conftest import train_version
from tests.serving.export_venv import mlflow_predict, mlflow_venv

N = 100
WORDS = {"spam": "win prize cash free offer", "ham": "meeting lunch report team notes"}


def _label_all(annotator, pairs):
    for sample, value in pairs:
        label_given(sample=sample, annotator=annotator, value=value)


@pytest.fixture
def image_project(served_project):
    return served_project


@pytest.fixture
def text_project(text_project_labeled):
    train_version(text_project_labeled)
    return text_project_labeled


def make_tabular(project, annotator, estimator="logreg"):
    project.kind = Project.Kind.TABULAR
    project.labels = ["a", "b"]
    project.columns = ["x", "y", "colour"]
    project.batch_size = 1000
    # A few trees are enough to show what converts; the default 100 take long to fit here.
    params = {"max_iter": 10} if estimator == "hist_gb" else {}
    project.model_spec = {"estimator": estimator, "params": params}
    project.save()
    rng = np.random.default_rng(1)
    pairs = []
    for i in range(60):
        label = "a" if i % 2 else "b"
        values = {"x": float(rng.normal(1 if label == "a" else -1)), "y": float(rng.normal()),
                  "colour": str(rng.choice(["red", "blue"] if label == "a" else ["blue", "grey"]))}
        if i % 7 == 0:
            values["y"] = None
        split = Sample.Split.TEST if i >= 48 else Sample.Split.POOL
        pairs.append((Sample.objects.create(project=project, values=values, split=split), label))
    _label_all(annotator, pairs)
    version = train_version(project)
    assert version.status == "ready", version.error
    return project


def _image_inputs() -> list[bytes]:
    images = []
    for i in range(N):
        data = png_bytes(i % 3, seed=5000 + i)
        if i % 10 == 0:  # another mode, size and format: the API's general decode path
            image = Image.open(io.BytesIO(png_bytes(i % 3, size=16, seed=i))).convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG" if i % 20 == 0 else "PNG")
            data = buffer.getvalue()
        images.append(data)
    return images


def inputs_for(project) -> tuple[list[dict], list[dict]]:
    """Return (API instances, DataFrame rows) for 100 inputs of the project's kind."""
    rng = np.random.default_rng(7)
    if project.kind == Project.Kind.IMAGE:
        encoded = [base64.b64encode(b).decode() for b in _image_inputs()]
        return [{"image_base64": e} for e in encoded], [{"image": e} for e in encoded]
    if project.kind == Project.Kind.TEXT:
        vocab = (WORDS["spam"] + " " + WORDS["ham"] + " unknown words here").split()
        texts = [" ".join(rng.choice(vocab, int(rng.integers(1, 8)))) for _ in range(N)]
        return [{"text": t} for t in texts], [{"text": t} for t in texts]
    rows = []
    for i in range(N):
        rows.append({"x": float(rng.normal(0, 2)),
                     "y": None if i % 9 == 0 else float(rng.normal()),
                     "colour": [None, "red", "blue", "grey", "green"][i % 5]})
    return rows, rows


def api_predictions(client, project, instances) -> list[dict]:
    response = client.post(f"/api/v1/projects/{project.slug}/predict", {"instances": instances},
                           format="json")
    assert response.status_code == 200, response.content
    return response.json()["predictions"]


def export(client, project, fmt, number=1):
    return client.get(f"/api/v1/projects/{project.slug}/models/{number}/export?format={fmt}")


def test_mlflow_exports_load_in_mlflow_skinny_and_predict_as_the_api(
        pytestconfig, image_project, token_client, tmp_path):
    python = mlflow_venv(pytestconfig)
    jobs, expected = {}, {}
    # One project per kind, made and exported one after the other in the same database.
    for kind in ("image", "text", "tabular"):
        project = _project_of_kind(kind, image_project)
        admin, predictor = token_client(project, ["admin"]), token_client(project, ["predict"])
        response = export(admin, project, "mlflow")
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/zip"
        assert f'filename="{project.slug}-v1-mlflow.zip"' in response["Content-Disposition"]
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            names = archive.namelist()
            archive.extractall(tmp_path / kind)
        root = f"{project.slug}-v1-mlflow"
        assert {f"{root}/MLmodel", f"{root}/requirements.txt", f"{root}/python_env.yaml",
                f"{root}/conda.yaml", f"{root}/model.pkl"} <= set(names)
        requirements = (tmp_path / kind / root / "requirements.txt").read_text().split()
        assert "mlflow-skinny==3.17.2" in requirements and all("==" in r for r in requirements)
        instances, rows = inputs_for(project)
        expected[kind] = (project, api_predictions(predictor, project, instances))
        jobs[kind] = {"model": str(tmp_path / kind / root), "rows": rows}
    out = mlflow_predict(python, jobs, tmp_path)
    assert out["mlflow_version"] == "3.17.2"
    for kind, (project, predictions) in expected.items():
        frame = out["results"][kind]["frame"]
        assert len(frame["label"]) == N
        assert frame["label"] == [p["label"] for p in predictions], kind
        for label in project.labels:
            np.testing.assert_allclose(frame[f"proba_{label}"],
                                       [p["probabilities"][label] for p in predictions],
                                       rtol=0, atol=1e-9, err_msg=kind)
        np.testing.assert_allclose(frame["confidence"], [p["confidence"] for p in predictions],
                                   rtol=0, atol=1e-9)
    assert out["results"]["text"]["signature"] == ["text"]
    assert out["results"]["image"]["signature"] == ["image"]
    assert out["results"]["tabular"]["signature"] == ["x", "y", "colour"]


def _project_of_kind(kind, image_project):
    """The image project itself, or a new text or tabular project (new owner and annotator)."""
    if kind == "image":
        return image_project
    from tests.factories import ProjectFactory
    project = ProjectFactory()
    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator, role="annotator")
    if kind == "tabular":
        return make_tabular(project, annotator)
    project.kind, project.labels, project.batch_size = Project.Kind.TEXT, ["spam", "ham"], 1000
    project.save()
    rng = np.random.default_rng(3)
    pairs = []
    for i in range(60):
        label = "spam" if i % 2 else "ham"
        text = " ".join(rng.choice(WORDS[label].split(), 4))
        split = Sample.Split.TEST if i >= 48 else Sample.Split.POOL
        pairs.append((Sample.objects.create(project=project, text=text, split=split), label))
    _label_all(annotator, pairs)
    assert train_version(project).status == "ready"
    return project


def _onnx_feeds(project, session, rows):
    if project.kind == Project.Kind.IMAGE:
        X = np.vstack([features.image_vector(features.open_image(io.BytesIO(
            base64.b64decode(r["image"])), max_pixels=10**7), size=project.image_size)
            for r in rows])
        return {"pixels": X.astype(np.float32)}
    feeds = {}
    for spec in session.get_inputs():
        values = [r[spec.name] for r in rows]
        if spec.type == "tensor(string)":
            feeds[spec.name] = np.array(["" if v is None else str(v) for v in values],
                                        dtype=object).reshape(-1, 1)
        else:
            feeds[spec.name] = np.array([np.nan if v is None else v for v in values],
                                        dtype=np.float32).reshape(-1, 1)
    return feeds


@pytest.mark.parametrize("kind,estimator", [("image", "logreg"), ("tabular", "logreg"),
                                            ("tabular", "random_forest"),
                                            ("tabular", "linear_svm")])
def test_onnx_exports_predict_as_the_api(kind, estimator, request, db, token_client):
    ort = pytest.importorskip("onnxruntime")
    if kind == "image":
        project = request.getfixturevalue("served_project")
    else:
        project = make_tabular(request.getfixturevalue("project"),
                               request.getfixturevalue("annotator"), estimator)
    response = export(token_client(project, ["admin"]), project, "onnx")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/octet-stream"
    session = ort.InferenceSession(response.content)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["project"] == project.slug and meta["model_version"] == "1"
    classes = json.loads(meta["classes"])
    instances, rows = inputs_for(project)
    predictions = api_predictions(token_client(project), project, instances)
    labels, proba = session.run(["label", "probabilities"], _onnx_feeds(project, session, rows))
    expected = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    np.testing.assert_allclose(proba, expected, rtol=0, atol=2e-5)
    clear = np.sort(expected, axis=1)[:, -1] - np.sort(expected, axis=1)[:, -2] > 1e-4
    assert clear.sum() > N * 0.9
    assert [str(x) for x in np.asarray(labels)[clear]] == [
        p["label"] for p, c in zip(predictions, clear) if c]


def test_onnx_refuses_text_and_names_the_reason(text_project, token_client):
    response = export(token_client(text_project, ["admin"]), text_project, "onnx")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "not_exportable" and body["detail"] == {"reason": "text_featurizer"}
    assert "char_wb" in body["error"]


def test_onnx_refuses_what_skl2onnx_cannot_convert(project, annotator, token_client):
    project = make_tabular(project, annotator, "hist_gb")
    response = export(token_client(project, ["admin"]), project, "onnx")
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == {"reason": "converter"}
    assert "HistGradientBoostingClassifier" in response.json()["error"]


def test_export_errors_are_json(served_project, token_client, client):
    admin = token_client(served_project, ["admin"])
    unknown = export(admin, served_project, "pmml")
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid"
    assert "format" in unknown.json()["detail"]
    missing = admin.get(f"/api/v1/projects/{served_project.slug}/models/1/export")
    assert missing.status_code == 400 and "format" in missing.json()["detail"]
    assert export(admin, served_project, "mlflow", number=9).json()["code"] == "unknown_version"
    ModelVersion.objects.create(project=served_project, number=2, status="training")
    not_ready = export(admin, served_project, "onnx", number=2)
    assert not_ready.status_code == 409 and not_ready.json()["code"] == "version_not_ready"
    forbidden = export(token_client(served_project, ["predict"]), served_project, "mlflow")
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "permission_denied"
    assert export(client, served_project, "mlflow").status_code in (401, 403)


def test_owner_session_exports_and_annotator_may_not(served_project, annotator, client):
    client.force_login(annotator)
    assert export(client, served_project, "mlflow").status_code == 403
    client.force_login(served_project.owner)
    response = export(client, served_project, "onnx")
    assert response.status_code == 200 and response.content[:2] != b"{\""


def test_a_tampered_artifact_is_not_exported(served_project, token_client, settings):
    version = ModelVersion.objects.get(project=served_project, number=1)
    path = settings.ARTIFACT_ROOT / version.artifact_path
    path.write_bytes(path.read_bytes() + b"x")
    response = export(token_client(served_project, ["admin"]), served_project, "mlflow")
    assert response.status_code == 409 and response.json()["code"] == "artifact_refused"


def test_export_model_command(served_project, tmp_path):
    out = tmp_path / "model.onnx"
    call_command("export_model", served_project.slug, "1", "--format", "onnx", "--out", str(out))
    assert out.stat().st_size > 100
    call_command("export_model", served_project.slug, "1", "--out", str(tmp_path / "m.zip"))
    assert zipfile.is_zipfile(tmp_path / "m.zip")
    with pytest.raises(CommandError, match="unknown_version"):
        call_command("export_model", served_project.slug, "7", "--out", str(out))
