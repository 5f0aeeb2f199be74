"""Browser tests: the pages and the API docs work under the Content-Security-Policy.

The ``page`` fixture fails a test on any CSP violation Chromium reports.
"""
import pytest

from annotation.models import ImportJob


@pytest.mark.e2e
def test_pages_render_and_run_htmx_without_csp_violations(page, login, project, make_samples):
    make_samples(4, n_test=1)
    job = ImportJob.objects.create(project=project, user=project.owner, format="csv")
    login(project.owner)
    slug = project.slug
    for path in ["/", "/projects/new/", f"/projects/{slug}/", f"/projects/{slug}/review/",
                 f"/projects/{slug}/import/", f"/projects/{slug}/imports/{job.pk}/",
                 f"/projects/{slug}/settings/", f"/projects/{slug}/tokens/"]:
        response = page.goto(path)
        assert response.status == 200, path
        assert "unsafe-inline" not in response.headers["content-security-policy"]
    # htmx works: changing a review filter swaps the rows in place.
    page.goto(f"/projects/{slug}/review/")
    page.evaluate("window.__noReload = 42")
    with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true"):
        page.check("form.filters input[type=checkbox] >> nth=0")
    assert page.evaluate("window.__noReload") == 42
    # htmx would have injected its indicator style; it is switched off, and the CSS has it.
    assert page.evaluate("document.querySelectorAll('style').length") == 0


@pytest.mark.e2e
def test_login_lockout_message_shows_on_the_login_page(page, annotator, settings):
    for i in range(settings.LOGIN_FAILURE_LIMIT + 1):
        page.goto("/login/")
        page.fill("input[name=username]", annotator.username)
        page.fill("input[name=password]", f"wrong{i}")
        with page.expect_navigation():
            page.click("form button[type=submit].primary")
    assert "Too many failed logins" in page.locator("#lockout").inner_text()
    assert page.locator("input[name=password]").is_visible()


@pytest.mark.e2e
def test_api_docs_render_swagger_ui_under_the_policy(page, db):
    response = page.goto("/api/docs/")
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Active-learning annotation service API" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock-summary").first.wait_for()
    assert page.locator(".opblock-summary").count() > 5
