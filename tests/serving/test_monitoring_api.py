"""The monitoring JSON: numbers from constructed logs, windows, versions, access."""
import datetime as dt
import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from serving import prediction_log
from serving.models import PredictionLog
from serving.monitoring_selectors import latency_percentile, share_below, wilson_interval
from serving.services import Prediction
from tests.factories import label_given

pytestmark = pytest.mark.django_db


def _log(project, version, confidences, *, status=200, at=None, latency=10.0, label=None):
    predictions = [Prediction(id=str(uuid.uuid4()), label=label or project.labels[i % 2],
                              confidence=c, probabilities={}) for i, c in enumerate(confidences)]
    log = prediction_log.RequestLog(
        project_id=project.pk, token_id=None, status_code=status, latency_ms=latency,
        created_at=at or timezone.now(), model_version_id=version.pk if version else None,
        predictions=predictions if status < 400 else ())
    prediction_log.prediction_log_write([log])
    return predictions


def _get(client, project, **query):
    response = client.get(f"/api/v1/projects/{project.slug}/monitoring", query)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def monitor(served_project, token_client):
    return token_client(served_project, scopes=("monitor",))


def test_numbers_from_constructed_logs(served_project, monitor):
    version = served_project.model_versions.get()
    now = timezone.now()
    first = _log(served_project, version, [0.95, 0.85, 0.45], latency=3.0)
    _log(served_project, version, [0.65], latency=30.0)
    _log(served_project, None, [], status=500, latency=300.0)
    _log(served_project, version, [0.99] * 4, at=now - dt.timedelta(hours=3))  # out of 1h
    # feedback on two of the first request's predictions: one right, one wrong
    PredictionLog.objects.filter(prediction_id=first[0].id).update(
        true_label=first[0].label, feedback_at=now)
    PredictionLog.objects.filter(prediction_id=first[1].id).update(
        true_label="not-" + first[1].label, feedback_at=now)

    data = _get(monitor, served_project, window="1h")
    assert data["window"] == "1h" and data["served_version"] == version.number
    assert data["traffic"]["requests"] == 3 and data["traffic"]["rows"] == 4
    assert sum(b["rows"] for b in data["traffic"]["series"]) == 4
    assert data["errors"]["by_status"] == {"401": 0, "403": 0, "429": 0, "4xx": 0, "5xx": 1}
    assert data["errors"]["rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert data["confidence"]["histogram"] == [0, 0, 0, 0, 1, 0, 1, 0, 1, 1]
    assert data["confidence"]["mean"] == pytest.approx((0.95 + 0.85 + 0.45 + 0.65) / 4, abs=1e-4)
    assert data["confidence"]["low_share"] == 0.25
    assert data["estimated_accuracy"]["value"] == data["confidence"]["mean"]
    assert "calibrated" in data["estimated_accuracy"]["note"]
    labels = served_project.labels
    assert data["classes"]["predicted"] == {labels[0]: 3, labels[1]: 1}
    assert data["classes"]["training"] == {label: 10 for label in labels}
    assert data["live_accuracy"]["n"] == 2 and data["live_accuracy"]["accuracy"] == 0.5
    low, high = wilson_interval(1, 2)
    assert data["live_accuracy"]["low"] == round(low, 4) and data["live_accuracy"]["high"] == round(high, 4)
    assert 16 <= data["latency_ms"]["p50"] <= 32 and 256 <= data["latency_ms"]["p99"] <= 512
    assert data["drift"] is None

    day = _get(monitor, served_project, window="24h")
    assert day["traffic"]["rows"] == 8 and day["traffic"]["requests"] == 4


def test_a_version_filter_counts_only_that_versions_requests(served_project, monitor):
    from tests.serving.conftest import train_version

    v1 = served_project.model_versions.get()
    v2 = train_version(served_project)
    _log(served_project, v1, [0.9])
    _log(served_project, v2, [0.8, 0.7])
    assert _get(monitor, served_project, version=v1.number)["traffic"]["rows"] == 1
    data = _get(monitor, served_project, version=v2.number)
    assert data["traffic"]["rows"] == 2 and data["classes"]["training_version"] == v2.number
    response = monitor.get(f"/api/v1/projects/{served_project.slug}/monitoring", {"version": 99})
    assert response.status_code == 404 and response.json()["code"] == "unknown_version"


def test_bad_window_is_a_400(served_project, monitor):
    response = monitor.get(f"/api/v1/projects/{served_project.slug}/monitoring", {"window": "2h"})
    assert response.status_code == 400 and set(response.json()) == {"error", "code", "detail"}


def test_access_monitor_scope_or_a_science_member(served_project, token_client, annotator,
                                                  django_user_model):
    from annotation.models import Membership
    from tests.factories import ProjectFactory

    url = f"/api/v1/projects/{served_project.slug}/monitoring"
    assert token_client(served_project, scopes=("predict",)).get(url).status_code == 403
    assert APIClient().get(url).status_code in (401, 403)
    assert token_client(ProjectFactory(), scopes=("monitor",)).get(url).status_code == 404
    session = APIClient()
    session.force_login(annotator)
    assert session.get(url).status_code == 403  # annotators do not monitor
    owner = APIClient()
    owner.force_login(served_project.owner)
    assert owner.get(url).status_code == 200
    scientist = django_user_model.objects.create_user("sci", password="pw-long-enough-1")
    Membership.objects.create(project=served_project, user=scientist, role=Membership.Role.SCIENTIST)
    session.force_login(scientist)
    assert session.get(url).status_code == 200


def test_estimators():
    assert latency_percentile([], 0.5) is None
    assert latency_percentile([0, 10] + [0] * 16, 0.5) == pytest.approx(2 ** 0.5)
    assert latency_percentile([0] * 17 + [3], 0.99) == 65536
    assert share_below([1, 1, 0, 0, 0, 0, 0, 0, 0, 2], 0.15) == pytest.approx(0.375)
    assert wilson_interval(0, 0) == (None, None)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)


def test_the_monitor_scope_is_offered_on_the_token_page():
    from serving.forms import TokenForm

    assert "monitor" in dict(TokenForm().fields["scopes"].choices)


def test_training_distribution_ignores_test_labels_and_later_labels(served_project, annotator,
                                                                   make_samples):
    for sample in make_samples(3, 9):
        label_given(sample=sample, annotator=annotator, value=served_project.labels[0])
    from serving.monitoring_selectors import training_distribution

    version = served_project.model_versions.get()
    counts = training_distribution(version=version)
    assert sum(counts.values()) == version.trained_on_label_count
