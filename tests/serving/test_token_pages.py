"""The project's token page: scientists create keys shown once, and revoke them."""
import re

from rest_framework.test import APIClient

from annotation.authentication import key_hash
from annotation.models import ApiToken
from tests.factories import MembershipFactory, UserFactory


def _member(project, role):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


def test_scientist_creates_token_and_sees_key_once(client, project):
    client.force_login(_member(project, "scientist"))
    response = client.post(f"/projects/{project.slug}/tokens/",
                           {"name": "checkout", "scopes": ["predict", "feedback"]})
    assert response.status_code == 200
    key = re.search(rb"<pre class=\"key\"><code>([^<]+)</code>", response.content).group(1).decode()
    token = ApiToken.objects.get(project=project)
    assert token.key_hash == key_hash(key) and token.scopes == ["feedback", "predict"]
    assert token.name == "checkout"
    again = client.get(f"/projects/{project.slug}/tokens/")
    assert key.encode() not in again.content and token.key_prefix.encode() in again.content


def test_token_without_scope_is_a_form_error(client, project):
    client.force_login(_member(project, "owner"))
    response = client.post(f"/projects/{project.slug}/tokens/", {"name": "x"})
    assert response.status_code == 200 and b'class="error"' in response.content
    assert not ApiToken.objects.exists()


def test_revoked_token_stops_working(client, project, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    client.force_login(_member(project, "scientist"))
    response = client.post(f"/projects/{project.slug}/tokens/", {"scopes": ["predict"]})
    key = re.search(rb"<code>([A-Za-z0-9_\-]{20,})</code>", response.content).group(1).decode()
    token = ApiToken.objects.get(project=project)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(f"/api/v1/projects/{project.slug}/models").status_code == 200
    assert client.post(f"/projects/{project.slug}/tokens/{token.pk}/revoke").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api.get(f"/api/v1/projects/{project.slug}/models").status_code == 401


def test_annotators_and_outsiders_cannot_manage_tokens(client, project):
    client.force_login(_member(project, "annotator"))
    assert client.get(f"/projects/{project.slug}/tokens/").status_code == 403
    assert client.post(f"/projects/{project.slug}/tokens/", {"scopes": ["admin"]}).status_code == 403
    client.force_login(UserFactory())
    assert client.get(f"/projects/{project.slug}/tokens/").status_code == 404
    assert not ApiToken.objects.exists()
