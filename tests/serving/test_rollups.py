"""Per-minute rollups: equal to counting the raw logs, kept when raw logs are pruned, and
counting the predict requests refused before their project was known."""
import datetime as dt
import random
import uuid
from collections import Counter

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from serving import prediction_log
from serving.models import (
    CONFIDENCE_COLUMNS,
    LATENCY_COLUMNS,
    PredictionClassRollup,
    PredictionLog,
    PredictionRollup,
)
from serving.rollups import confidence_bin, error_column, latency_bucket, minute_of
from serving.services import Prediction


def _request(project, version, *, status=200, n=1, at=None, latency=5.0, rng=None):
    rng = rng or random.Random(0)
    predictions = [Prediction(id=str(uuid.uuid4()), label=rng.choice(project.labels),
                              confidence=rng.random(), probabilities={}) for _ in range(n)]
    return prediction_log.RequestLog(
        project_id=project.pk, token_id=None, status_code=status, latency_ms=latency,
        created_at=at or timezone.now(), model_version_id=version.pk if version else None,
        predictions=predictions if status < 400 else ())


def _rollup_totals(project):
    fields = ("requests", "rows", "errors_401", "errors_403", "errors_429", "errors_4xx",
              "errors_5xx", *LATENCY_COLUMNS, *CONFIDENCE_COLUMNS)
    totals = PredictionRollup.objects.filter(project=project).aggregate(
        **{f: Sum(f) for f in fields}, confidence_sum=Sum("confidence_sum"))
    return {k: v or 0 for k, v in totals.items()}


@pytest.mark.django_db
def test_rollups_equal_a_brute_force_count_over_the_raw_logs(served_project, settings):
    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600
    prediction_log.prediction_log_flush()
    version = served_project.model_versions.get()
    rng = random.Random(7)
    start = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    latencies = Counter()
    for i in range(60):
        status = rng.choice([200, 200, 200, 400, 403, 429, 500])
        latency = rng.choice([0.3, 1.5, 3.0, 40.0, 900.0, 100_000.0])
        log = _request(served_project, version, status=status, n=rng.randint(1, 7),
                       at=start + dt.timedelta(seconds=7 * i), latency=latency, rng=rng)
        latencies[latency_bucket(latency)] += 1
        prediction_log.prediction_log_record(log)
        if i % 17 == 0:  # several flushes add to the same minutes
            prediction_log.prediction_log_flush()
    prediction_log.prediction_log_flush()

    logs = list(PredictionLog.objects.filter(project=served_project))
    ok = [log for log in logs if log.status_code < 400]
    totals = _rollup_totals(served_project)
    assert totals["rows"] == len(ok)
    assert totals["requests"] == 60
    failed = Counter(error_column(log.status_code) for log in logs if log.status_code >= 400)
    for column in ("errors_403", "errors_429", "errors_4xx", "errors_5xx"):
        assert totals[column] == failed[column]
    bins = Counter(confidence_bin(log.confidence) for log in ok)
    assert [totals[c] for c in CONFIDENCE_COLUMNS] == [bins[i] for i in range(10)]
    assert totals["confidence_sum"] == pytest.approx(sum(log.confidence for log in ok))
    assert [totals[c] for c in LATENCY_COLUMNS] == [latencies[i] for i in range(len(LATENCY_COLUMNS))]
    classes = dict(PredictionClassRollup.objects.filter(project=served_project)
                   .values_list("label").annotate(n=Sum("count")))
    assert classes == dict(Counter(log.predicted_label for log in ok))
    # per minute too, and under the version's number
    per_minute = Counter(minute_of(log.created_at) for log in ok)
    stored = dict(PredictionRollup.objects.filter(project=served_project, version=version.number)
                  .values_list("minute", "rows"))
    assert {m: n for m, n in stored.items() if n} == dict(per_minute)


@pytest.mark.django_db
def test_refused_requests_are_counted_without_a_row(served_project, token_client, client):
    url = f"/api/v1/projects/{served_project.slug}/predict"
    body = {"instances": [{"pixels": [0] * 64}]}
    assert client.post(url, body, content_type="application/json").status_code == 401
    bad = client.post(url, body, content_type="application/json",
                      HTTP_AUTHORIZATION="Token not-a-key")
    assert bad.status_code == 401
    no_scope = token_client(served_project, scopes=("feedback",))
    assert no_scope.post(url, body, format="json").status_code == 403
    ok = token_client(served_project)
    assert ok.post(url, body, format="json").status_code == 200
    totals = _rollup_totals(served_project)
    assert totals["errors_401"] == 2 and totals["errors_403"] == 1
    assert totals["requests"] == 4 and totals["rows"] == 1
    # the 401s left nothing but counts; the 403 of the project's own token its usual row
    assert PredictionLog.objects.filter(project=served_project).count() == 2


@pytest.mark.django_db
def test_a_refused_request_to_no_project_counts_nowhere(client):
    response = client.post("/api/v1/projects/no-such-project/predict", {},
                           content_type="application/json")
    assert response.status_code == 401
    assert not PredictionRollup.objects.exists()


@pytest.mark.django_db
def test_pruning_removes_old_raw_logs_in_batches_and_keeps_the_rollups(served_project, settings):
    version = served_project.model_versions.get()
    now = timezone.now()
    old = [_request(served_project, version, n=3, at=now - dt.timedelta(days=31, minutes=i))
           for i in range(5)]
    recent = _request(served_project, version, n=2, at=now - dt.timedelta(days=29))
    prediction_log.prediction_log_write([*old, recent])
    before = _rollup_totals(served_project)
    settings.PREDICTION_LOG_RETENTION_DAYS = 30
    call_command("prune_prediction_logs", "--batch", "4", stdout=open("/dev/null", "w"))
    assert PredictionLog.objects.filter(project=served_project).count() == 2
    assert _rollup_totals(served_project) == before and before["rows"] == 17


@pytest.mark.django_db
def test_a_failed_flush_keeps_its_requests_and_counts_them_once(served_project, settings,
                                                                  monkeypatch):
    from django.db import OperationalError

    from serving import rollups

    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600
    prediction_log.prediction_log_flush()
    version = served_project.model_versions.get()
    prediction_log.prediction_log_record(_request(served_project, version, n=3))
    prediction_log.prediction_refused_record(slug=served_project.slug, status_code=401,
                                             latency_ms=0.5)
    add = rollups.rollups_add

    def down(rows, requests, **kwargs):
        add(rows, requests, **kwargs)
        raise OperationalError("the database went away")

    monkeypatch.setattr(prediction_log, "rollups_add", down)
    with pytest.raises(OperationalError):
        prediction_log.prediction_log_flush()
    assert not PredictionLog.objects.exists() and not PredictionRollup.objects.exists()
    monkeypatch.setattr(prediction_log, "rollups_add", add)
    assert prediction_log.prediction_log_flush() == 3
    totals = _rollup_totals(served_project)
    assert (totals["requests"], totals["rows"], totals["errors_401"]) == (2, 3, 1)
