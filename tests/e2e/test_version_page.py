"""Browser test of the version page: open it, compare two versions, and Roll back after
confirming; the served version changes on the page and in the API."""
import pytest

from annotation.models import Label, Sample
from annotation.services.review import label_correct
from serving.services import api_token_create
from tests.factories import label_given
from tests.serving.conftest import train_version


@pytest.fixture
def two_versions(project, annotator, make_samples):
    project.batch_size = 1000
    project.promotion = "latest"
    project.save()
    for i, sample in enumerate(make_samples(30, 12)):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    train_version(project)
    for sample in Sample.objects.filter(project=project, split="pool"):
        if Label.objects.current().get(sample=sample).value == "0":
            label_correct(sample=sample, scientist=project.owner, value="1")
    assert train_version(project).is_served
    return project


def _served_by_api(page, slug, key):
    versions = page.request.get(f"/api/v1/projects/{slug}/models",
                                headers={"Authorization": f"Token {key}"}).json()
    return [v["number"] for v in versions if v["is_served"]]


@pytest.mark.e2e
def test_roll_back_on_the_version_page_changes_the_served_version(page, login, two_versions):
    project = two_versions
    slug = project.slug
    _token, key = api_token_create(project=project, scopes=["predict"])
    login(project.owner)
    assert _served_by_api(page, slug, key) == [2]

    page.goto(f"/projects/{slug}/")
    page.click(f"#versions a[href='/projects/{slug}/versions/2/']")
    page.wait_for_url(f"**/projects/{slug}/versions/2/")
    assert page.locator("h1 .badge").inner_text() == "served"
    assert page.locator(".heatmap td.diag").count() == 3

    # Compare v2 with v1 through the select: the changed test samples are listed.
    page.select_option("#compare-with", "1")
    with page.expect_navigation():
        page.click("#compare button[type=submit]")
    assert "with=1" in page.url
    assert page.locator("#compare-metrics").is_visible()
    assert page.locator("#changed-samples tr[data-sample]").count() > 0

    # Dismissing the confirmation changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#rollback-button")
    page.wait_for_timeout(300)
    assert "/versions/2/" in page.url and _served_by_api(page, slug, key) == [2]

    messages = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    with page.expect_navigation():
        page.click("#rollback-button")
    assert messages and messages[0].startswith("Roll back: serve v1")
    page.wait_for_url(f"**/projects/{slug}/versions/1/")
    assert "Rolled back: v1 is served now (was v2)." in page.locator(".flash").inner_text()
    assert page.locator("h1 .badge").inner_text() == "served"
    assert page.locator("#promotion-note").inner_text().startswith(
        f"Promotion: rolled back to by {project.owner.username}")
    assert _served_by_api(page, slug, key) == [1]
    response = page.request.post(f"/api/v1/projects/{slug}/predict",
                                 headers={"Authorization": f"Token {key}"},
                                 data={"instances": [{"pixels": [3] * 64}]})
    assert response.json()["model_version"] == 1
    # v2's page now offers to promote it again.
    page.goto(f"/projects/{slug}/versions/2/")
    assert page.locator("#serve-button").inner_text() == "Promote v2"


@pytest.mark.e2e
def test_screenshots_of_a_demo_like_project(page, login, tmp_path):
    """With VERSION_SCREENSHOT=path (and optionally ITERATIONS_SCREENSHOT=path), draw the
    README's pictures, the version page at 1366×768: 600 MNIST digits of the demo, three
    versions trained on 100, 200 and 300 labels, a simulate run for the baseline."""
    import os
    import random

    from django.core.management import call_command

    from annotation.demo import digit_pngs
    from annotation.models import Project
    from django.contrib.auth import get_user_model

    if not os.environ.get("VERSION_SCREENSHOT"):
        pytest.skip("set VERSION_SCREENSHOT=docs/version.png to draw the README's picture")
    call_command("load_demo", limit=600)
    project = Project.objects.get(slug="digits")
    project.batch_size = 10_000
    project.save()
    truth = {eid: label for eid, _png, label in digit_pngs(600)}
    annotator = get_user_model().objects.get(username="annotator")
    samples = list(Sample.objects.filter(project=project).order_by("pk"))
    random.Random(0).shuffle(samples)  # the digits come sorted by class
    for stop in (100, 200, 300):
        for sample in samples[stop - 100:stop]:
            label_given(sample=sample, annotator=annotator, value=truth[sample.external_id])
        train_version(project)
    assert list(project.model_versions.values_list("status", flat=True)) == ["ready"] * 3
    call_command("simulate", "project:digits", "--strategies", "random,default", "--seeds", "2",
                 "--batch-size", "20", "--budget", "300", "--out", str(tmp_path / "sim.json"))
    login(get_user_model().objects.get(username="scientist"), password="scientist")
    if os.environ.get("ITERATIONS_SCREENSHOT"):  # tall enough for the curve and the table
        page.set_viewport_size({"width": 1366, "height": 1100})
        page.goto("/projects/digits/")
        page.screenshot(path=os.environ["ITERATIONS_SCREENSHOT"])
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/projects/digits/versions/3/?with=2")
    assert page.locator("#changed-samples").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=os.environ["VERSION_SCREENSHOT"])
