"""Browser test of KPI rules: a rule added on the rules page (a refused value first, shown
as a form error), a stream with poor feedback, and the monitoring page showing the rule's
status, its firing with the routed inputs and the open alert, under the CSP."""
import os

import pytest

from serving.models import RuleFiring
from serving.rules.evaluation import rules_evaluate
from serving.services import api_token_create
from tests.serving.conftest import served_project  # noqa: F401  the fixture, shared


@pytest.mark.e2e
def test_rule_added_in_the_browser_fires_and_shows_on_the_monitoring_page(page, login,
                                                                          served_project):
    slug = served_project.slug
    login(served_project.owner)
    page.goto(f"/projects/{slug}/settings/")
    page.wait_for_selector("#settings-rules #rules-list")  # htmx loaded the list
    page.goto(f"/projects/{slug}/rules/")
    page.fill("input[name=name]", "live accuracy watch")
    page.select_option("select[name=metric]", "live_accuracy")
    page.select_option("select[name=op]", "<")
    page.fill("input[name=threshold]", "1.5")
    page.fill("input[name=min_count]", "5")
    page.fill("input[name=route_count]", "4")
    for action in ("route", "retrain", "alert"):
        page.check(f"input[name=actions][value={action}]")
    page.click("#rule-new button[type=submit]")
    assert page.locator("#rule-new .error").inner_text() == "live_accuracy is a share: give a number from 0 to 1"
    page.fill("input[name=threshold]", "0.8")
    with page.expect_navigation():
        page.click("#rule-new button[type=submit]")
    assert "live accuracy watch" in page.locator("#rules-table").inner_text()

    _token, key = api_token_create(project=served_project, scopes=["predict", "feedback"])
    auth = {"Authorization": f"Token {key}"}
    answer = page.request.post(f"/api/v1/projects/{slug}/predict", headers=auth, data={
        "instances": [{"pixels": [(i * 7) % 16 * 16] * 64} for i in range(14)]}).json()
    for p in answer["predictions"][:6]:
        wrong = next(label for label in served_project.labels if label != p["label"])
        sent = page.request.post(f"/api/v1/projects/{slug}/feedback", headers=auth,
                                 data={"prediction_id": p["id"], "label": wrong})
        assert sent.status == 201, sent.text()
    assert set(rules_evaluate().values()) == {"fired"}  # what beat's task runs
    firing = RuleFiring.objects.get()

    page.goto(f"/projects/{slug}/monitoring/?window=1h")
    rules = page.locator("#monitoring-rules")
    assert "fired" in rules.locator("#rules-table .rule-status").inner_text()
    firings = rules.locator("#rule-firings").inner_text()
    assert f"{len(firing.sample_ids)} input(s) routed" in firings and "route, retrain, alert" in firings
    assert "live_accuracy < 0.8" in rules.locator("#rule-alerts").inner_text()
    if os.environ.get("RULES_SCREENSHOT"):
        rules.screenshot(path=os.environ["RULES_SCREENSHOT"])

    page.goto(f"/projects/{slug}/")
    page.wait_for_selector("#rule-alerts")  # the project page loads the open alerts
    page.goto(f"/projects/{slug}/label/")
    tag = page.locator("#sample-card [data-origin]")
    assert tag.get_attribute("data-origin") == "production"
