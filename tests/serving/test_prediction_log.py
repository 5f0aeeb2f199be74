"""Prediction logs: what each row keeps, and what waits in the buffer until the writer runs."""
import base64
import gc
import uuid

import pytest
from django.db import connection

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


def _log(project, token_id, labels, instances=None, version_id=None):
    """A request log of ``len(labels)`` predictions with fresh ids."""
    from django.utils import timezone

    from serving.services import Prediction

    predictions = [Prediction(id=str(uuid.uuid4()), label=label, confidence=0.5,
                              probabilities={}) for label in labels]
    return prediction_log.RequestLog(
        project_id=project.pk, token_id=token_id, status_code=200, latency_ms=1.0,
        created_at=timezone.now(), model_version_id=version_id, predictions=predictions,
        instances=instances)


def _ids(log):
    return [uuid.UUID(p.id) for p in log.predictions]


def test_one_projects_bad_rows_never_cost_other_projects_their_logs(
        served_project, client_with_token, token_client, settings):
    """A batch with rows the database refuses stores every good row as it is, and the bad
    ones repaired with a note; feedback by the good rows' ids then works."""
    from tests.factories import ProjectFactory

    other = ProjectFactory()
    version = served_project.model_versions.get().pk
    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600  # the writer thread would not get to it
    prediction_log.prediction_log_flush()
    token = client_with_token.token.pk
    good = _log(served_project, token, ["0", "1", "2"],
                [{"pixels": [i] * 64} for i in range(3)], version_id=version)
    # A label no encoder takes, and an instance PostgreSQL's jsonb refuses.
    refused = _log(other, None, ["bad\ud800"], [{"text": "a\x00b"}])
    nul_only = _log(other, None, ["1"], [{"text": "c\x00d"}])
    nul_label = _log(other, None, ["x\x00y"])  # PostgreSQL's text refuses it; SQLite takes it
    later = _log(served_project, token, ["1", "0"], [{"pixels": [9] * 64}] * 2,
                 version_id=version)
    for log in (good, refused, nul_only, nul_label, later):
        prediction_log.prediction_log_record(log)
    assert prediction_log.prediction_log_flush() == 8
    stored = {log.prediction_id: log for log in PredictionLog.objects.all()}
    assert set(stored) == set(_ids(good) + _ids(refused) + _ids(nul_only) + _ids(nul_label)
                              + _ids(later))
    assert all(stored[i].note == "" for i in _ids(good) + _ids(later))
    assert stored[_ids(good)[0]].instance == {"pixels": [0] * 64}
    repaired = stored[_ids(refused)[0]]
    assert repaired.predicted_label == "bad\ufffd" and "stored after" in repaired.note
    assert repaired.instance in ({"text": "a\ufffdb"}, None)
    cleaned = stored[_ids(nul_only)[0]]
    assert cleaned.instance == {"text": "c\ufffdd"} and "NUL" in cleaned.note
    if connection.vendor == "postgresql":
        label = stored[_ids(nul_label)[0]]
        assert label.predicted_label == "x\ufffdy" and "stored after DataError" in label.note
    reporter = token_client(served_project, scopes=("feedback",))
    response = reporter.post(f"/api/v1/projects/{served_project.slug}/feedback",
                             {"prediction_id": str(_ids(good)[1]), "label": "1"}, format="json")
    assert response.status_code == 201, response.content


def test_a_good_batch_is_written_by_one_copy_on_postgresql(served_project, monkeypatch):
    """PostgreSQL takes a flush's rows by COPY (a pipelined insert cost the serving process
    about 60 µs a row); SQLite by the plain insert."""
    copies = []
    real = prediction_log._copy_write

    def spy(cursor, rows):
        copies.append(real(cursor, rows))
        return copies[-1]

    monkeypatch.setattr(prediction_log, "_copy_write", spy)
    log = _log(served_project, None, ["0", "1", "2"], [{"pixels": [i] * 64} for i in range(3)])
    assert prediction_log.prediction_log_write([log]) == 3
    assert copies == ([True] if connection.vendor == "postgresql" else [])
    stored = PredictionLog.objects.get(prediction_id=_ids(log)[2])
    assert stored.instance == {"pixels": [2] * 64} and stored.predicted_label == "2"


def test_a_row_written_before_is_not_written_twice(served_project, client_with_token):
    """A flush retried after its commit went through stores nothing twice and fails nothing."""
    log = _log(served_project, client_with_token.token.pk, ["0", "1"])
    assert prediction_log.prediction_log_write([log]) == 2
    fresh = _log(served_project, None, ["2"])
    assert prediction_log.prediction_log_write([log, fresh]) == 1
    assert PredictionLog.objects.count() == 3


def test_rows_of_a_deleted_token_or_version_are_kept_without_them(served_project):
    log = _log(served_project, 987654, ["0"], version_id=987654)
    assert prediction_log.prediction_log_write([log]) == 1
    row = PredictionLog.objects.get()
    assert row.token_id is None and row.model_version_id is None
    assert "model version and token deleted" in row.note


def test_a_flush_the_database_refuses_whole_keeps_its_rows_for_the_next(
        served_project, settings, monkeypatch):
    from django.db import OperationalError

    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600
    prediction_log.prediction_log_flush()
    log = _log(served_project, None, ["0", "1"])
    prediction_log.prediction_log_record(log)
    write = prediction_log._rows_write

    def down(rows, requests=()):
        raise OperationalError("the database went away")

    monkeypatch.setattr(prediction_log, "_rows_write", down)
    with pytest.raises(OperationalError):
        prediction_log.prediction_log_flush()
    monkeypatch.setattr(prediction_log, "_rows_write", write)
    assert prediction_log.prediction_log_flush() == 2
    assert set(PredictionLog.objects.values_list("prediction_id", flat=True)) == set(_ids(log))


def _child_exits_with_rows_buffered(marker: str) -> None:
    def written(rows, requests=()):
        with open(marker, "w") as out:
            out.write(f"{len(rows)} {len(requests)}")
        return len(rows)

    prediction_log._rows_write = written
    prediction_log._buffer._rows = [("row",), ("row",)]
    prediction_log._buffer._requests = [("request",)]


def test_rows_buffered_in_a_server_worker_are_written_when_it_stops(tmp_path):
    """granian's workers are multiprocessing children: stopped by SIGTERM, they leave
    through os._exit, which runs multiprocessing's finalizers and not atexit."""
    import multiprocessing

    marker = tmp_path / "flushed"
    child = multiprocessing.get_context("fork").Process(
        target=_child_exits_with_rows_buffered, args=(str(marker),))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert marker.read_text() == "2 1"
