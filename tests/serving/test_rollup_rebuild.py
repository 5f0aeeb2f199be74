"""``rollups_rebuild``: the rollups rebuilt from raw logs in SQL equal what the writer adds up
flush by flush, keep the refusals that left no raw row, change nothing when run again, and
never touch minutes whose raw logs may be pruned."""
import datetime as dt
import random
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from serving import prediction_log
from serving.models import (
    PredictionClassHourRollup,
    PredictionClassRollup,
    PredictionHourRollup,
    PredictionLog,
    PredictionRollup,
)
from serving.rollup_rebuild import rollups_rebuild
from serving.rollups import COUNT_COLUMNS
from serving.services import Prediction, api_token_create
from tests.serving.conftest import train_version

TABLES = {PredictionRollup: "minute", PredictionHourRollup: "hour",
          PredictionClassRollup: "minute", PredictionClassHourRollup: "hour"}


def _snapshot(project) -> dict:
    """Every rollup row of the project, keyed, with its counts (float sums rounded)."""
    snap = {}
    for model, time_field in TABLES.items():
        if model in (PredictionRollup, PredictionHourRollup):
            for row in model.objects.filter(project=project).values():
                values = tuple(round(row[c], 6) if c == "confidence_sum" else row[c]
                               for c in COUNT_COLUMNS)
                if any(values):
                    snap[(model.__name__, row["version"], row[time_field])] = values
        else:
            for row in model.objects.filter(project=project).values():
                if row["count"]:
                    snap[(model.__name__, row["version"], row[time_field], row["label"])] = row["count"]
    return snap


def _traffic(project, versions, token, *, start, rng, requests=120, refusals=True):
    """Predict requests through the buffered writer over about three hours from ``start``:
    several versions, failed statuses, latencies and confidences on the buckets' edges, and
    refusals that leave no raw row; flushed now and then, as the writer thread does."""
    for i in range(requests):
        at = start + dt.timedelta(seconds=97 * i, microseconds=rng.randrange(10**6))
        status = rng.choice([200] * 6 + [400, 403, 429, 500])
        version = rng.choice(versions)
        n = rng.choice([1, 1, 2, 5])
        predictions = [Prediction(id=str(uuid.uuid4()), label=rng.choice(project.labels),
                                  confidence=rng.choice([0.0, 0.1, 0.3, 0.55, 0.7, 0.9, 1.0]),
                                  probabilities={}) for _ in range(n)]
        prediction_log.prediction_log_record(prediction_log.RequestLog(
            project_id=project.pk, token_id=token.pk, status_code=status,
            latency_ms=rng.choice([0.3, 1.0, 2.0, 3.5, 64.0, 900.0, 100_000.0]),
            created_at=at, model_version_id=version.pk if status < 400 else None,
            predictions=predictions if status < 400 else ()))
        if refusals and i % 9 == 0:
            prediction_log.prediction_refused_record(slug=project.slug, status_code=401,
                                                     latency_ms=0.4)
        if i % 25 == 0:
            prediction_log.prediction_log_flush()
    prediction_log.prediction_log_flush()


@pytest.fixture
def logged(served_project, settings):
    """A project with two versions and three hours of traffic written by the writer."""
    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600  # flushed by the test only
    prediction_log.prediction_log_flush()
    versions = [served_project.model_versions.get(), train_version(served_project)]
    token, _key = api_token_create(project=served_project, scopes=["predict"])
    start = timezone.now().replace(microsecond=0) - dt.timedelta(hours=4, minutes=7, seconds=3)
    _traffic(served_project, versions, token, start=start, rng=random.Random(5))
    return served_project


@pytest.mark.django_db
def test_rebuilt_rollups_equal_the_writers_and_rebuilding_again_changes_nothing(logged):
    written = _snapshot(logged)
    assert any(key[0] == "PredictionHourRollup" for key in written)
    assert len({key[1] for key in written}) == 3  # versions 1, 2 and 0 (failed, refused)

    report = rollups_rebuild(project=logged, batch=dt.timedelta(hours=1))
    assert report.batches >= 4 and report.predictions > 0
    assert _snapshot(logged) == written
    rollups_rebuild(project=logged, batch=dt.timedelta(minutes=25))  # other batch edges
    assert _snapshot(logged) == written


@pytest.mark.django_db
def test_rebuild_from_nothing_restores_all_but_the_refusals_that_left_no_row(logged):
    written = _snapshot(logged)
    refused = PredictionRollup.objects.filter(project=logged, version=0)
    refused_401 = sum(refused.values_list("errors_401", flat=True))
    assert refused_401 > 0
    for model in TABLES:
        model.objects.all().delete()

    call_command("rollups_rebuild", "--project", logged.slug, stdout=StringIO())
    rebuilt = _snapshot(logged)
    assert {k: v for k, v in rebuilt.items() if k[1] != 0} == \
           {k: v for k, v in written.items() if k[1] != 0}
    errors_401 = COUNT_COLUMNS.index("errors_401")
    assert sum(v[errors_401] for k, v in rebuilt.items() if k[0] == "PredictionRollup") == 0
    # the rest of version 0 (failed requests of the project's own token) is all there
    requests, errors_403 = COUNT_COLUMNS.index("requests"), COUNT_COLUMNS.index("errors_403")
    for column in (requests, errors_403):
        total = sum(v[column] for k, v in written.items() if k[0] == "PredictionRollup")
        again = sum(v[column] for k, v in rebuilt.items() if k[0] == "PredictionRollup")
        assert total - again == (refused_401 if column == requests else 0)


@pytest.mark.django_db
def test_rebuild_repairs_wrong_counts(logged):
    written = _snapshot(logged)
    PredictionRollup.objects.filter(project=logged, version=1).update(rows=999, confidence_5=7)
    PredictionClassHourRollup.objects.filter(project=logged).delete()
    PredictionClassRollup.objects.filter(project=logged, version=2).update(count=3)
    assert _snapshot(logged) != written
    rollups_rebuild()
    assert _snapshot(logged) == written


@pytest.mark.django_db
def test_logs_written_with_rollups_off_are_counted_by_a_rebuild_as_the_writer_counts(
        served_project, settings):
    settings.PREDICTION_LOG_BUFFERED = True
    settings.PREDICTION_LOG_FLUSH_SECONDS = 3600
    prediction_log.prediction_log_flush()
    versions = [served_project.model_versions.get(), train_version(served_project)]
    token, _key = api_token_create(project=served_project, scopes=["predict"])
    start = timezone.now() - dt.timedelta(hours=2, minutes=30)
    _traffic(served_project, versions, token, start=start, rng=random.Random(3), refusals=False)
    written = _snapshot(served_project)
    for model in (PredictionLog, *TABLES):
        model.objects.all().delete()

    settings.PREDICTION_ROLLUPS = False  # the same traffic again: raw rows only
    _traffic(served_project, versions, token, start=start, rng=random.Random(3))
    assert PredictionLog.objects.count() > 120 and _snapshot(served_project) == {}
    rollups_rebuild()
    assert _snapshot(served_project) == written


@pytest.mark.django_db
def test_minutes_past_the_retention_horizon_and_before_since_are_left_alone(served_project,
                                                                              settings):
    settings.PREDICTION_LOG_RETENTION_DAYS = 30
    version = served_project.model_versions.get()
    now = timezone.now()

    def request(at, n):
        return prediction_log.RequestLog(
            project_id=served_project.pk, token_id=None, status_code=200, latency_ms=3.0,
            created_at=at, model_version_id=version.pk,
            predictions=[Prediction(id=str(uuid.uuid4()), label="a", confidence=0.8,
                                    probabilities={}) for _ in range(n)])

    old, recent = now - dt.timedelta(days=31), now - dt.timedelta(days=2)
    prediction_log.prediction_log_write([request(old, 3), request(recent, 2)])
    PredictionLog.objects.filter(created_at__lt=now - dt.timedelta(days=30))[:1].get().delete()
    PredictionRollup.objects.update(rows=50)
    rollups_rebuild(project=served_project)
    rows = dict(PredictionRollup.objects.values_list("minute", "rows"))
    assert rows == {old.replace(second=0, microsecond=0): 50,  # half pruned: left alone
                    recent.replace(second=0, microsecond=0): 2}

    PredictionRollup.objects.update(rows=50)
    rollups_rebuild(project=served_project, since=now - dt.timedelta(days=1))
    assert set(PredictionRollup.objects.values_list("rows", flat=True)) == {50}


@pytest.mark.django_db
def test_the_command_refuses_an_unknown_project_and_a_bad_date(served_project):
    with pytest.raises(CommandError, match="no project"):
        call_command("rollups_rebuild", "--project", "nope", stdout=StringIO())
    with pytest.raises(CommandError, match="ISO"):
        call_command("rollups_rebuild", "--since", "yesterday", stdout=StringIO())
    out = StringIO()
    call_command("rollups_rebuild", "--since", "2026-01-01", stdout=out)
    assert "0 project(s)" in out.getvalue()


@pytest.mark.django_db
def test_the_migration_fills_the_hour_rollups_from_the_minute_rollups(logged):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("serving.migrations.0008_prediction_hour_rollups")
    written = _snapshot(logged)
    PredictionHourRollup.objects.all().delete()
    PredictionClassHourRollup.objects.all().delete()
    migration.hours_from_minutes(apps, None)
    assert _snapshot(logged) == written
