"""GET /metrics: Prometheus text of predict counters (multiprocess files) and of the
database's labels, retrains and served versions; a 'monitor' token sees its project only."""
import re
import uuid

import pytest
from rest_framework.test import APIClient

from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _value(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def test_a_monitor_token_sees_its_projects_counters(served_project, token_client,
                                                     django_capture_on_commit_callbacks):
    slug = served_project.slug
    monitor = token_client(served_project, scopes=("monitor",))
    before = _scrape(monitor)
    predictor = token_client(served_project)
    with django_capture_on_commit_callbacks(execute=True):
        for n in (2, 3):
            response = predictor.post(f"/api/v1/projects/{slug}/predict",
                                      {"instances": [{"pixels": [0] * 64}] * n}, format="json")
            assert response.status_code == 200
        assert APIClient().post(f"/api/v1/projects/{slug}/predict", {}, format="json").status_code == 401
    after = _scrape(monitor)

    def delta(name, **labels):
        return _value(after, name, project=slug, **labels) - _value(before, name, project=slug, **labels)

    assert delta("predict_requests_total", status="2xx") == 2
    assert delta("predict_requests_total", status="401") == 1
    assert delta("predict_rows_total") == 5
    assert delta("predict_latency_seconds_count") == 3
    assert _value(after, "served_model_version", project=slug) == 1
    assert _value(after, "retrains_total", project=slug, outcome="ready") == 1
    assert _value(after, "annotation_labels_current", project=slug) == 39
    assert not re.search(r'project="(?!' + re.escape(slug) + r'")', after)


def test_an_allowed_address_sees_every_project(served_project, settings):
    from learning.models import ModelVersion

    other = ProjectFactory()
    ModelVersion.objects.create(project=other, number=1, status="ready", is_served=True)
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    text = _scrape(APIClient(REMOTE_ADDR="127.0.0.1"))
    assert f'served_model_version{{project="{served_project.slug}"}}' in text
    assert f'served_model_version{{project="{other.slug}"}} 1.0' in text


def test_others_are_refused(served_project, token_client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.9"]
    assert APIClient(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code in (401, 403)
    response = token_client(served_project, scopes=("predict",)).get("/metrics")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_observing_a_flush_at_once_counts_as_observing_each_amount():
    """The writer adds a flush's latencies with one increment per bucket: the same buckets,
    count and sum as ``observe`` of each, bounds included."""
    from prometheus_client import CollectorRegistry, Histogram

    from serving.metrics import _observe_many
    from serving.models import LATENCY_BOUNDS_MS

    bounds = [b / 1000 for b in LATENCY_BOUNDS_MS]
    amounts = [0.0, *bounds, *(b * 1.0001 for b in bounds), 0.0004, 1e6, 0.0123]
    samples = []
    for name, observe in (("one_by_one", lambda h: [h.observe(a) for a in amounts]),
                          ("at_once", lambda h: _observe_many(h, amounts))):
        # Named apart: in multiprocess mode, equal names would share their values' file.
        histogram = Histogram(f"test_{name}_{uuid.uuid4().hex}", "test", buckets=bounds,
                              registry=CollectorRegistry())
        observe(histogram)
        samples.append({(s.name.rsplit("_", 1)[1], s.labels.get("le")): s.value
                        for s in histogram.collect()[0].samples if not s.name.endswith("_created")})
    one_by_one, at_once = samples
    assert one_by_one.keys() == at_once.keys()
    for key, value in one_by_one.items():
        assert at_once[key] == pytest.approx(value), key
    assert one_by_one[("count", None)] == len(amounts)
