"""Every page is served under a Content-Security-Policy with no inline code, and has none."""
import re
from pathlib import Path

import pytest

from annotation.models import ImportJob
from learning.models import ModelVersion
from tests.factories import UserFactory

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
INLINE = [
    ("<script> without src", re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)),
    ("<style>", re.compile(r"<style\b", re.I)),
    ("style= attribute", re.compile(r"""\sstyle\s*=\s*["']""", re.I)),
    ("on…= handler", re.compile(r"""\son[a-z]+\s*=\s*["']""", re.I)),
    ("hx-on handler", re.compile(r"\shx-on[:-]", re.I)),
    ("javascript: URL", re.compile(r"javascript:", re.I)),
]


def _directives(header: str) -> dict[str, list[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


def _assert_strict(response):
    header = response.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']}: no Content-Security-Policy"
    assert "unsafe-inline" not in header and "unsafe-eval" not in header
    directives = _directives(header)
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    return directives


def test_no_template_has_inline_scripts_styles_or_handlers():
    found = [f"{path.relative_to(TEMPLATES)}: {what}"
             for path in sorted(TEMPLATES.rglob("*.html"))
             for what, pattern in INLINE if pattern.search(path.read_text())]
    assert found == []


@pytest.fixture
def owner_client(client, project, make_samples):
    make_samples(3, n_test=1)
    client.force_login(project.owner)
    return client


def test_every_page_carries_the_policy(owner_client, project):
    job = ImportJob.objects.create(project=project, user=project.owner, format="csv")
    ModelVersion.objects.create(project=project, number=1, status="failed", error="x")
    slug = project.slug
    pages = ["/", "/projects/new/", f"/projects/{slug}/versions/1/", f"/projects/{slug}/", f"/projects/{slug}/label/",
             f"/projects/{slug}/review/", f"/projects/{slug}/import/",
             f"/projects/{slug}/imports/{job.pk}/", f"/projects/{slug}/settings/",
             f"/projects/{slug}/tokens/", f"/projects/{slug}/annotators/"]
    for path in pages:
        response = owner_client.get(path)
        assert response.status_code == 200, path
        _assert_strict(response)
    # htmx partials too.
    _assert_strict(owner_client.get(f"/projects/{slug}/", HTTP_HX_REQUEST="true"))


def test_login_forbidden_and_not_found_pages_carry_the_policy(client, project):
    _assert_strict(client.get("/login/"))
    client.force_login(UserFactory())
    _assert_strict(client.get(f"/projects/{project.slug}/"))  # 404 for a non-member
    _assert_strict(client.get("/no/such/page/"))


def test_admin_carries_the_policy(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    _assert_strict(client.get("/admin/"))


def test_api_docs_load_their_script_from_a_url_and_allow_data_images_only_there(client, db):
    page = client.get("/api/docs/")
    directives = _assert_strict(page)
    assert directives["img-src"] == ["'self'", "data:"]
    html = page.content.decode()
    assert not INLINE[0][1].search(html) and "<style" not in html
    script = re.search(r'<script src="([^"]+\?script=[^"]*)"', html).group(1).replace("&amp;", "&")
    assert client.get(script).status_code == 200
    assert _directives(client.get("/login/")["Content-Security-Policy"])["img-src"] == ["'self'"]
