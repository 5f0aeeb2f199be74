"""Wiring of the labeling pages: partials for htmx, visible errors, access rules."""
import re

from annotation.models import Label
from tests.factories import UserFactory


def _shown_sample(response) -> int:
    return int(re.search(rb'data-sample="(\d+)"', response.content).group(1))


def _login(client, user):
    client.force_login(user)
    return client


def test_label_page_renders_full_page_then_partial_for_htmx(client, project, annotator, make_samples):
    make_samples(3)
    _login(client, annotator)
    page = client.get(f"/projects/{project.slug}/label/")
    assert page.status_code == 200 and b"<html" in page.content and b'id="sample-card"' in page.content
    sample_id = _shown_sample(page)
    swapped = client.post(f"/projects/{project.slug}/label/",
                          {"sample": sample_id, "value": "1", "duration_ms": 1200},
                          HTTP_HX_REQUEST="true")
    assert swapped.status_code == 200
    assert b"<html" not in swapped.content and b'id="sample-card"' in swapped.content
    assert _shown_sample(swapped) != sample_id
    assert Label.objects.get(sample_id=sample_id).duration_ms == 1200


def test_label_post_with_unknown_value_shows_error_and_keeps_sample(client, project, annotator,
                                                                      make_samples):
    make_samples(2)
    _login(client, annotator)
    sample_id = _shown_sample(client.get(f"/projects/{project.slug}/label/"))
    response = client.post(f"/projects/{project.slug}/label/", {"sample": sample_id, "value": "cat"},
                           HTTP_HX_REQUEST="true")
    assert b'class="error"' in response.content and _shown_sample(response) == sample_id
    assert not Label.objects.exists()


def test_non_member_gets_404_and_anonymous_is_redirected(client, project, make_samples):
    make_samples(1)
    assert client.get(f"/projects/{project.slug}/label/").status_code == 302
    _login(client, UserFactory())
    assert client.get(f"/projects/{project.slug}/label/").status_code == 404
    assert client.get(f"/projects/{project.slug}/").status_code == 404


def test_project_detail_lists_iterations(client, project, annotator):
    _login(client, annotator)
    assert client.get(f"/projects/{project.slug}/")["Location"] == f"/projects/{project.slug}/label/"
    _login(client, project.owner)
    response = client.get(f"/projects/{project.slug}/")
    assert response.status_code == 200 and b"Iterations" in response.content
    partial = client.get(f"/projects/{project.slug}/", HTTP_HX_REQUEST="true")
    assert b'id="iterations"' in partial.content and b"<html" not in partial.content


def test_sample_image_is_served_to_members_only(client, project, annotator, make_samples):
    (sample,) = make_samples(1)
    _login(client, annotator)
    response = client.get(f"/projects/{project.slug}/samples/{sample.pk}/image")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    _login(client, UserFactory())
    assert client.get(f"/projects/{project.slug}/samples/{sample.pk}/image").status_code == 404
