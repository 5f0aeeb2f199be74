"""The monitoring page: the JSON's numbers as tables, a partial for htmx, access by role."""
import re
import uuid

import pytest
from django.utils import timezone

from serving import prediction_log
from serving.services import Prediction
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _member(project, role):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


def _served(project, version, confidences, status=200):
    predictions = [Prediction(id=str(uuid.uuid4()), label=project.labels[0], confidence=c,
                              probabilities={}) for c in confidences]
    prediction_log.prediction_log_write([prediction_log.RequestLog(
        project_id=project.pk, token_id=None, status_code=status, latency_ms=12.0,
        created_at=timezone.now(), model_version_id=version.pk,
        predictions=predictions if status < 400 else ())])


def _cell(html: str, field: str) -> str:
    match = re.search(rf'data-field="{re.escape(field)}">([^<]*)<', html)
    assert match, f"no cell {field}"
    return match.group(1).strip()


def test_the_page_shows_the_same_numbers_as_the_json(client, served_project):
    version = served_project.model_versions.get()
    _served(served_project, version, [0.9, 0.3, 0.75])
    _served(served_project, version, [], status=429)
    client.force_login(served_project.owner)
    html = client.get(f"/projects/{served_project.slug}/monitoring/?window=1h").content.decode()
    data = client.get(f"/api/v1/projects/{served_project.slug}/monitoring?window=1h").json()
    for field, value in (("traffic.requests", data["traffic"]["requests"]),
                         ("traffic.rows", data["traffic"]["rows"]),
                         ("errors.by_status.429", 1), ("errors.rate", data["errors"]["rate"]),
                         ("latency_ms.p95", data["latency_ms"]["p95"]),
                         ("confidence.mean", data["confidence"]["mean"]),
                         ("confidence.low_share", data["confidence"]["low_share"]),
                         ("estimated_accuracy.value", data["estimated_accuracy"]["value"])):
        assert _cell(html, field) == str(value), field
    assert data["traffic"]["requests"] == 2 and data["traffic"]["rows"] == 3
    assert 'hx-trigger="every 30s"' in html and "vendor/uplot/uPlot.iife.min.js" in html
    assert f'data-url="/api/v1/projects/{served_project.slug}/monitoring?window=1h"' in html


def test_htmx_gets_the_tables_alone(client, served_project):
    client.force_login(served_project.owner)
    html = client.get(f"/projects/{served_project.slug}/monitoring/?window=7d",
                      HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<div id="monitoring-tables"') and "<html" not in html
    assert 'hx-get="/projects/' + served_project.slug + '/monitoring/?window=7d"' in html


def test_window_and_version_choices(client, served_project):
    client.force_login(served_project.owner)
    version = served_project.model_versions.get()
    url = f"/projects/{served_project.slug}/monitoring/"
    html = client.get(url, {"window": "bogus", "version": "x"}).content.decode()
    assert 'aria-current="page" data-window="24h"' in html
    html = client.get(url, {"window": "30d", "version": version.number}).content.decode()
    assert f'<option value="{version.number}" selected>' in html
    assert f"window=30d&amp;version={version.number}" in html


def test_owners_and_scientists_only(client, served_project):
    url = f"/projects/{served_project.slug}/monitoring/"
    client.force_login(_member(served_project, "scientist"))
    assert client.get(url).status_code == 200
    client.force_login(_member(served_project, "annotator"))
    assert client.get(url).status_code == 403
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302


def test_the_tokens_page_links_to_monitoring(client, served_project):
    client.force_login(served_project.owner)
    html = client.get(f"/projects/{served_project.slug}/tokens/").content.decode()
    assert f'href="/projects/{served_project.slug}/monitoring/"' in html
