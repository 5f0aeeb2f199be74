"""Guessing API keys is limited per client address: 401s, then 429 with Retry-After."""
import secrets

import pytest
from rest_framework.test import APIClient

from annotation import authentication
from annotation.authentication import KeyGuessingGate
from annotation.labeling_fast_path import LabelingFastPath
from annotation.services import personal_token_create
from serving.services import api_token_create, api_token_revoke
from tests.annotation.test_labeling_fast_path import _CountingDjango, call

HERE, ELSEWHERE = "203.0.113.7", "198.51.100.9"
LIMIT = 5


@pytest.fixture(autouse=True)
def _low_limit(settings):
    settings.API_AUTH_FAILURES_PER_MIN = LIMIT


def _get(project, key, address=HERE):
    client = APIClient(REMOTE_ADDR=address)
    return client.get(f"/api/v1/projects/{project.slug}/models", HTTP_AUTHORIZATION=f"Token {key}")


def _guess() -> str:
    return secrets.token_urlsafe(32)


def test_bad_keys_from_one_address_get_429_while_another_address_still_gets_401(project):
    assert [_get(project, _guess()).status_code for _ in range(LIMIT)] == [401] * LIMIT
    refused = _get(project, _guess())
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"] == {"retry_after": int(refused["Retry-After"])}
    assert refused.json()["error"].startswith("too many failed API key checks from this address")
    assert _get(project, _guess(), address=ELSEWHERE).status_code == 401
    # A refused address learns nothing: a valid key it never used is refused unchecked.
    _token, key = api_token_create(project=project, scopes=["admin"])
    assert _get(project, key).status_code == 429
    assert _get(project, key, address=ELSEWHERE).status_code == 200


def test_working_clients_are_not_counted_nor_locked_out_by_a_neighbour_on_a_revoked_key(project):
    token, key = api_token_create(project=project, scopes=["admin"])
    assert [_get(project, key).status_code for _ in range(3 * LIMIT)] == [200] * (3 * LIMIT)
    stale, stale_key = api_token_create(project=project, scopes=["admin"])
    api_token_revoke(token=stale)
    answers = [_get(project, stale_key).status_code for _ in range(LIMIT + 3)]
    assert answers == [401] * LIMIT + [429] * 3
    # The key that has been working from this address keeps working.
    assert _get(project, key).status_code == 200


def test_no_limit_when_the_setting_is_zero(project, settings):
    settings.API_AUTH_FAILURES_PER_MIN = 0
    assert {_get(project, _guess()).status_code for _ in range(LIMIT + 3)} == {401}


def test_the_labeling_fast_path_is_closed_to_a_refused_address(project, annotator, make_samples):
    """The fast path checks keys itself; a refused address must not reach it to test guesses."""
    make_samples(3)
    django_app = _CountingDjango()
    app = KeyGuessingGate(LabelingFastPath(django_app), django_app)
    next_url = f"/api/v1/projects/{project.slug}/next"
    here, elsewhere = {"REMOTE_ADDR": HERE}, {"REMOTE_ADDR": ELSEWHERE}
    statuses = [call(app, "GET", next_url, key=_guess(), extra=here)[0] for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]
    right = personal_token_create(project=project, user=annotator)[1]
    django_app.calls = 0
    assert call(app, "GET", next_url, key=right, extra=here)[0] == 429
    assert django_app.calls == 1  # answered by Django, not by the fast path
    django_app.calls = 0
    assert call(app, "GET", next_url, key=right, extra=elsewhere)[0] == 200
    assert django_app.calls == 0  # other addresses keep the fast path


def test_the_gate_costs_nothing_while_no_address_is_refused(project):
    assert not authentication._refused_here
    app = KeyGuessingGate(fast_path=lambda environ, start: "fast", django_application=None)
    assert app({"REMOTE_ADDR": HERE}, None) == "fast"
