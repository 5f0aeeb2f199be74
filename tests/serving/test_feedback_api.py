"""The feedback API: true labels for predictions or new instances become production samples."""
import base64
import uuid

import pytest

from annotation.models import Label, Sample
from learning.models import ModelVersion
from serving.models import PredictionLog
from serving.services import feedback_record
from tests.factories import png_bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _predict(client, project, instances):
    response = client.post(f"/api/v1/projects/{project.slug}/predict",
                           {"instances": instances}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["predictions"]


def _feedback(client, project, body):
    return client.post(f"/api/v1/projects/{project.slug}/feedback", body, format="json")


@pytest.fixture
def clients(served_project, token_client):
    """(predict client, feedback client) for the served project."""
    return token_client(served_project), token_client(served_project, scopes=("feedback",))


def test_feedback_on_a_prediction_makes_a_labeled_production_sample(served_project, clients):
    predictor, reporter = clients
    [prediction] = _predict(predictor, served_project, [{"image_base64": _b64(png_bytes(2, seed=5))}])
    wrong = "1" if prediction["label"] != "1" else "0"
    response = _feedback(reporter, served_project, {"prediction_id": prediction["id"], "label": wrong})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["prediction_id"] == prediction["id"] and body["correct"] is False
    assert body["predicted_label"] == prediction["label"] and body["created"] is True
    sample = Sample.objects.get(pk=body["sample_id"])
    assert (sample.origin, sample.split, sample.status) == ("feedback", "pool", "labeled")
    assert sample.image.read() == png_bytes(2, seed=5) and sample.thumbnail.name
    label = Label.objects.get(sample=sample)
    assert label.value == wrong and label.annotator.username == f"api-feedback-{served_project.pk}"
    assert not label.annotator.is_active and not label.annotator.has_usable_password()
    log = PredictionLog.objects.get(prediction_id=prediction["id"])
    assert log.true_label == wrong and log.feedback_at and log.sample_id == sample.pk
    assert log.is_correct is False and log.instance is None  # the sample holds it now


def test_repeated_feedback_is_idempotent_and_another_label_corrects(served_project, clients):
    predictor, reporter = clients
    [prediction] = _predict(predictor, served_project, [{"image_base64": _b64(png_bytes(0))}])
    body = {"prediction_id": prediction["id"], "label": "0"}
    first = _feedback(reporter, served_project, body)
    again = _feedback(reporter, served_project, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["created"] is False and again.json()["sample_id"] == first.json()["sample_id"]
    assert Sample.objects.filter(origin="feedback").count() == 1
    corrected = _feedback(reporter, served_project, {**body, "label": "2"})
    assert corrected.status_code == 201 and corrected.json()["sample_id"] == first.json()["sample_id"]
    labels = Label.objects.filter(sample_id=first.json()["sample_id"]).order_by("id")
    assert [(l.value, l.superseded_at is None) for l in labels] == [("0", False), ("2", True)]
    assert PredictionLog.objects.get(prediction_id=prediction["id"]).true_label == "2"


def test_feedback_on_a_new_instance(served_project, clients):
    _predictor, reporter = clients
    response = _feedback(reporter, served_project,
                         {"instance": {"image_base64": _b64(png_bytes(1))}, "label": "1"})
    assert response.status_code == 201, response.content
    assert response.json()["prediction_id"] is None and response.json()["correct"] is None
    sample = Sample.objects.get(pk=response.json()["sample_id"])
    assert sample.origin == "feedback" and sample.labels.get().value == "1"


def test_pixels_instances_predict_and_become_png_samples(served_project, clients):
    predictor, reporter = clients
    pixels = [[255 if r in (4, 5) else 10 for _c in range(8)] for r in range(8)]
    [prediction] = _predict(predictor, served_project, [{"pixels": pixels}])
    [same] = _predict(predictor, served_project, [{"pixels": sum(pixels, [])}])
    assert prediction["probabilities"] == same["probabilities"]
    response = _feedback(reporter, served_project, {"prediction_id": prediction["id"], "label": "2"})
    assert response.status_code == 201, response.content
    import numpy as np
    from PIL import Image

    sample = Sample.objects.get(pk=response.json()["sample_id"])
    assert np.asarray(Image.open(sample.image)).tolist() == pixels


def test_instance_not_kept_must_be_resent(served_project, clients, settings):
    settings.PREDICTION_LOG_INSTANCE_MAX_BYTES = 0
    predictor, reporter = clients
    instance = {"image_base64": _b64(png_bytes(1))}
    [prediction] = _predict(predictor, served_project, [instance])
    assert PredictionLog.objects.get(prediction_id=prediction["id"]).instance is None
    response = _feedback(reporter, served_project, {"prediction_id": prediction["id"], "label": "1"})
    assert response.status_code == 400 and "send it again as 'instance'" in response.json()["error"]
    response = _feedback(reporter, served_project,
                         {"prediction_id": prediction["id"], "label": "1", "instance": instance})
    assert response.status_code == 201 and response.json()["correct"] is not None


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"prediction_id": str(uuid.uuid4()), "label": "1"}, 404, "has no prediction"),
        ({"prediction_id": "not-a-uuid", "label": "1"}, 400, "prediction_id"),
        ({"label": "1"}, 400, "'prediction_id', an 'instance'"),
        ({"instance": {"image_base64": _b64(png_bytes(1))}, "label": "7"}, 400,
         "'7' is not a label"),
        ({"instance": {"image_base64": "@@"}, "label": "1"}, 400, "not valid base64"),
        ({"instance": {"text": "hi"}, "label": "1"}, 400, "unknown field(s) 'text'"),
        ({"instance": {"pixels": [1, 2]}, "label": "1"}, 400, "'pixels' must be 64 numbers"),
        ({"instance": {"image_base64": _b64(b"nope")}, "label": "1"}, 400, "not a decodable"),
        ({"prediction_id": str(uuid.uuid4()), "label": "1", "extra": 1}, 400,
         "unknown field(s) 'extra'"),
        ({"instance": {"image_base64": _b64(png_bytes(1))}}, 400, "label"),
    ],
)
def test_bad_feedback_is_a_4xx_json_error(served_project, clients, body, status, fragment):
    _predictor, reporter = clients
    response = _feedback(reporter, served_project, body)
    assert response.status_code == status, response.content
    assert fragment in response.json()["error"]
    assert not Sample.objects.filter(origin="feedback").exists()


def test_feedback_needs_the_feedback_scope_and_the_right_project(served_project, clients):
    predictor, _reporter = clients
    response = _feedback(predictor, served_project, {"label": "1", "instance": {}})
    assert response.status_code == 403 and "'feedback' scope" in response.json()["error"]


def test_a_prediction_of_another_project_is_unknown(served_project, clients, token_client):
    from tests.factories import ProjectFactory

    predictor, _reporter = clients
    [prediction] = _predict(predictor, served_project, [{"image_base64": _b64(png_bytes(1))}])
    other = ProjectFactory()
    response = _feedback(token_client(other, scopes=("feedback",)), other,
                         {"prediction_id": prediction["id"], "label": "1"})
    assert response.status_code == 404


def test_feedback_counts_toward_the_retrain_batch(served_project, clients):
    served_project.batch_size = 3
    served_project.save(update_fields=["batch_size"])
    predictor, reporter = clients
    versions = ModelVersion.objects.count()
    predictions = _predict(predictor, served_project,
                           [{"image_base64": _b64(png_bytes(i % 3, seed=i))} for i in range(3)])
    for i, prediction in enumerate(predictions):
        _feedback(reporter, served_project, {"prediction_id": prediction["id"], "label": str(i % 3)})
    assert ModelVersion.objects.count() == versions + 1
    newest = ModelVersion.objects.order_by("-number").first()
    assert (newest.trigger, newest.requested_at_label_count) == ("batch", 42)  # 39 + 3


def test_buffered_logs_are_flushed_before_an_id_is_called_unknown(served_project, clients,
                                                                    settings):
    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600  # the writer thread would not get to it
    predictor, _reporter = clients
    [prediction] = _predict(predictor, served_project, [{"image_base64": _b64(png_bytes(1))}])
    feedback = feedback_record(project=served_project, label="1",
                               prediction_id=uuid.UUID(prediction["id"]))
    assert feedback.created and feedback.sample_id



def test_feedback_sample_counts_toward_label_counters(served_project, clients):
    from annotation.models import LabelCounts

    _predictor, reporter = clients
    before = LabelCounts.objects.get(project=served_project)
    response = _feedback(reporter, served_project,
                         {"instance": {"image_base64": _b64(png_bytes(2))}, "label": "2"})
    assert response.status_code == 201, response.content
    after = LabelCounts.objects.get(project=served_project)
    assert (after.labeled_pool, after.current_labels) == (
        before.labeled_pool + 1, before.current_labels + 1)
