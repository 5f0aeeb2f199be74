"""Browser test of input drift on the monitoring page: inputs like the training data leave
the verdict off; a drifted batch sent through the predict API turns it on at the next
htmx refresh, with the JSON's features in the table."""
import re

import pytest

from serving.services import api_token_create
from tests.serving.conftest import served_project  # noqa: F401  the fixture, shared
from tests.serving.test_drift_monitoring import _pixels

VERDICT = '[data-field="drift.verdict"]'


def _predict(page, slug, key, instances):
    response = page.request.post(f"/api/v1/projects/{slug}/predict",
                                 headers={"Authorization": f"Token {key}"},
                                 data={"instances": instances})
    assert response.status == 200, response.text()


@pytest.mark.e2e
def test_a_drifted_batch_turns_the_verdict_on(page, login, served_project, settings):
    settings.MONITORING_DRIFT_CACHE_SECONDS = 0  # read afresh at each refresh, not a minute on
    slug = served_project.slug
    _token, key = api_token_create(project=served_project, scopes=["predict"])
    page.clock.install()
    login(served_project.owner)
    _predict(page, slug, key, [{"pixels": _pixels(i % 3, 500 + i)} for i in range(60)])

    page.goto(f"/projects/{slug}/monitoring/?window=1h")
    verdict = page.locator(VERDICT)
    assert verdict.inner_text().startswith("No dataset drift")
    rows = page.locator("#monitoring-drift-features tr[data-feature]")
    assert rows.count() == 10  # ten principal components of the pixels

    _predict(page, slug, key, [{"pixels": _pixels(i % 3, 900 + i, invert=True)}
                               for i in range(150)])
    with page.expect_response(re.compile(r"/monitoring/\?window=1h")):
        page.clock.run_for(31_000)
    page.wait_for_function(
        f"() => document.querySelector('{VERDICT}').textContent.includes('Dataset drift detected')")
    data = page.request.get(f"/api/v1/projects/{slug}/monitoring?window=1h").json()["drift"]
    assert data["drifted"] is True and data["n"] == 210
    shown = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '#monitoring-drift-features tr[data-feature]')].map(tr => [tr.dataset.feature,
        tr.querySelector('[data-field="drift.drifted"]').textContent.trim()]))""")
    assert shown == {f["name"]: "yes" if f["drifted"] else "no" for f in data["features"]}
