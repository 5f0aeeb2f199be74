"""API tokens: creation with validated scopes, revocation, last use, per-token throttling."""
import pytest
from django.core.management import CommandError, call_command

from annotation.authentication import key_hash
from annotation.models import ApiToken
from serving.services import api_token_create, api_token_revoke
from tests.serving.test_predict_api import _b64, _predict
from tests.factories import png_bytes


def test_create_token_command_prints_a_key_stored_hashed_with_scopes(project, capsys):
    call_command("create_token", project.slug, "--scopes", "admin, predict,admin")
    key = capsys.readouterr().out.strip()
    token = ApiToken.objects.get()
    assert token.key_hash == key_hash(key) and key not in token.key_hash
    assert token.scopes == ["admin", "predict"]


def test_create_token_command_defaults_to_predict(project, capsys):
    call_command("create_token", project.slug)
    assert ApiToken.objects.get().scopes == ["predict"]


@pytest.mark.parametrize("scopes, fragment", [("predict,delete", "delete"), (",", "unknown scopes"),
                                              ("", "unknown scopes"), ("PREDICT", "PREDICT")])
def test_create_token_command_rejects_bad_scopes(project, scopes, fragment):
    with pytest.raises(CommandError, match=fragment):
        call_command("create_token", project.slug, "--scopes", scopes)
    assert not ApiToken.objects.exists()


def test_create_token_command_rejects_unknown_project(db):
    with pytest.raises(CommandError, match="no project"):
        call_command("create_token", "nope")


def test_api_token_revoke_is_idempotent(project):
    token, _key = api_token_create(project=project)
    first = api_token_revoke(token=token).revoked_at
    assert first is not None
    assert api_token_revoke(token=token).revoked_at == first


def test_last_used_time_is_recorded(served_project, client_with_token):
    assert client_with_token.token.last_used_at is None
    _predict(client_with_token, served_project, {"instances": [{"image_base64": _b64(png_bytes(1))}]})
    client_with_token.token.refresh_from_db()
    assert client_with_token.token.last_used_at is not None


def test_throttled_token_gets_a_429_with_retry_after_and_json(served_project, token_client,
                                                               settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "predict": "2/min"}
    body = {"instances": [{"image_base64": _b64(png_bytes(1))}]}
    client = token_client(served_project)
    assert [_predict(client, served_project, body).status_code for _ in range(2)] == [200, 200]
    response = _predict(client, served_project, body)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"].startswith("too many requests")
    assert response.json()["detail"] == {"retry_after": int(response["Retry-After"])}
    other = token_client(served_project)  # the limit is per token
    assert _predict(other, served_project, body).status_code == 200


def test_throttle_scopes_are_separate(served_project, token_client, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "read": "1/min"}
    client = token_client(served_project)
    url = f"/api/v1/projects/{served_project.slug}/models"
    assert client.get(url).status_code == 200
    assert client.get(url).status_code == 429
    body = {"instances": [{"image_base64": _b64(png_bytes(1))}]}
    assert _predict(client, served_project, body).status_code == 200


def test_a_last_use_the_database_refuses_to_record_never_fails_the_request(
        served_project, client_with_token, monkeypatch):
    """SQLite under load refused the bookkeeping update ('database is locked') and the
    prediction it rode on answered 500."""
    from django.db import OperationalError
    from django.db.models import QuerySet

    real_update = QuerySet.update

    def busy(self, **fields):
        if self.model is ApiToken and "last_used_at" in fields:
            raise OperationalError("database is locked")
        return real_update(self, **fields)

    monkeypatch.setattr(QuerySet, "update", busy)
    response = _predict(client_with_token, served_project,
                        {"instances": [{"image_base64": _b64(png_bytes(1))}]})
    assert response.status_code == 200
    assert ApiToken.objects.get().last_used_at is None  # not recorded; tried again next time
