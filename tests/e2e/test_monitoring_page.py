"""Browser test of the monitoring page: predictions sent over the API show up in its
tables and charts with the JSON's numbers, refreshed by htmx, under the CSP."""
import re

import pytest

from serving.services import api_token_create
from tests.serving.conftest import served_project  # noqa: F401  the fixture, shared

CHARTS_LOADED = """n => {
  const root = document.querySelector('#monitoring-charts');
  return !!root && Number(root.dataset.loads || 0) >= n
    && document.querySelectorAll('#monitoring-charts canvas').length >= 3;
}"""


def _predict(page, slug, key, n):
    response = page.request.post(
        f"/api/v1/projects/{slug}/predict", headers={"Authorization": f"Token {key}"},
        data={"instances": [{"pixels": [i % 16] * 64} for i in range(n)]})
    assert response.status == 200, response.text()


def _cells(page) -> dict[str, str]:
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('#monitoring-tables td[data-field]')]
          .filter(td => !td.closest('#monitoring-classes'))
          .map(td => [td.dataset.field, td.textContent.trim()]))""")


def _flat(data: dict) -> dict[str, str]:
    shown = {
        "traffic.requests": data["traffic"]["requests"], "traffic.rows": data["traffic"]["rows"],
        "errors.total": data["errors"]["total"], "errors.rate": data["errors"]["rate"],
        **{f"errors.by_status.{k}": v for k, v in data["errors"]["by_status"].items()},
        **{f"latency_ms.{k}": v for k, v in data["latency_ms"].items()},
        "confidence.mean": data["confidence"]["mean"],
        "confidence.low_share": data["confidence"]["low_share"],
        **{f"confidence.histogram.{i}": n for i, n in enumerate(data["confidence"]["histogram"])},
        "live_accuracy.accuracy": data["live_accuracy"]["accuracy"],
        "live_accuracy.n": data["live_accuracy"]["n"],
        "estimated_accuracy.value": data["estimated_accuracy"]["value"],
    }
    return {k: "–" if v is None else str(v) for k, v in shown.items()}


@pytest.mark.e2e
def test_predictions_appear_on_the_monitoring_page_as_in_the_json(page, login, served_project):
    served = served_project
    slug = served.slug
    _token, key = api_token_create(project=served, scopes=["predict"])
    page.clock.install()
    login(served.owner)
    _predict(page, slug, key, 3)
    _predict(page, slug, key, 2)
    refused = page.request.post(f"/api/v1/projects/{slug}/predict",
                                headers={"Authorization": "Token wrong"}, data={"instances": []})
    assert refused.status == 401

    page.goto(f"/projects/{slug}/monitoring/?window=1h")
    page.wait_for_function(CHARTS_LOADED, arg=1)
    data = page.request.get(f"/api/v1/projects/{slug}/monitoring?window=1h").json()
    assert data["traffic"]["requests"] == 3 and data["traffic"]["rows"] == 5
    assert data["errors"]["by_status"]["401"] == 1
    cells = _cells(page)
    assert {k: cells[k] for k in _flat(data)} == _flat(data)
    classes = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '#monitoring-classes tr[data-label]')].map(tr => [tr.dataset.label,
        tr.querySelector('[data-field="classes.predicted"]').textContent.trim()]))""")
    assert {k: int(v) for k, v in classes.items() if v != "0"} == data["classes"]["predicted"]

    # More predictions: the tables refresh themselves after 30 s, and the charts with them.
    _predict(page, slug, key, 4)
    with page.expect_response(re.compile(r"/monitoring/\?window=1h")):
        page.clock.run_for(31_000)
    page.wait_for_function(CHARTS_LOADED, arg=2)
    page.wait_for_function(
        "() => document.querySelector('[data-field=\"traffic.rows\"]').textContent.trim() === '9'")
    data = page.request.get(f"/api/v1/projects/{slug}/monitoring?window=1h").json()
    cells = _cells(page)
    assert {k: cells[k] for k in _flat(data)} == _flat(data)
    assert page.locator("#monitoring-charts").get_attribute("data-requests") == "4"
    assert page.locator("#monitoring-charts").get_attribute("data-error") is None
