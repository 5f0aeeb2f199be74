"""Prediction logs: what each row keeps, and what waits in the buffer until the writer runs."""
import base64
import gc
import uuid

import pytest

from serving import prediction_log
from serving.models import PredictionLog
from tests.factories import png_bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _predict(client, project, instances):
    response = client.post(f"/api/v1/projects/{project.slug}/predict",
                           {"instances": instances}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["predictions"]


def test_a_body_over_the_limit_keeps_each_instance_that_fits(served_project, client_with_token,
                                                              settings):
    small = {"pixels": [0] * 64}
    large = {"image_base64": _b64(png_bytes(1, size=64, seed=0))}
    settings.PREDICTION_LOG_INSTANCE_MAX_BYTES = len(large["image_base64"]) - 1
    kept, dropped = _predict(client_with_token, served_project, [small, large])
    assert PredictionLog.objects.get(prediction_id=kept["id"]).instance == small
    assert PredictionLog.objects.get(prediction_id=dropped["id"]).instance is None


def test_a_body_within_the_limit_keeps_every_instance_as_sent(served_project, client_with_token):
    instances = [{"pixels": [i] * 64} for i in range(3)]
    predictions = _predict(client_with_token, served_project, instances)
    logs = {str(log.prediction_id): log.instance for log in PredictionLog.objects.all()}
    assert [logs[p["id"]] for p in predictions] == instances


def test_buffered_rows_are_plain_values_out_of_the_collectors_sight(
        served_project, client_with_token, settings):
    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600  # the writer thread would not get to it
    prediction_log.prediction_log_flush()
    predictions = _predict(client_with_token, served_project,
                           [{"pixels": [i] * 64} for i in range(5)])
    gc.collect()
    rows = list(prediction_log._buffer._rows)
    assert len(rows) == 5 and not any(gc.is_tracked(row) for row in rows)
    assert prediction_log.prediction_log_flush() == 5
    assert set(PredictionLog.objects.values_list("prediction_id", flat=True).iterator()) >= {
        uuid.UUID(p["id"]) for p in predictions}


@pytest.fixture(autouse=True)
def _empty_buffer():
    yield
    prediction_log.prediction_log_flush()
