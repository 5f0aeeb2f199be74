"""The WSGI fast path for predict answers like PredictApi, and hands Django the rest."""
import pytest

from core import remembered
from serving import predict_fast_path
from serving.models import PredictionLog
from serving.predict_fast_path import PredictFastPath
from serving.services import api_token_create
from tests.annotation.test_labeling_fast_path import _CountingDjango, call
from tests.factories import ProjectFactory, png_bytes
from tests.serving.test_predict_api import _b64


@pytest.fixture
def django_app():
    return _CountingDjango()


@pytest.fixture
def fast(django_app, settings):
    settings.API_TOKEN_CACHE_SECONDS = 60.0  # the fast path serves remembered tokens only
    remembered.forget()
    yield PredictFastPath(django_app)
    remembered.forget()


@pytest.fixture
def key(served_project):
    return api_token_create(project=served_project, scopes=["predict"])[1]


def _url(project) -> str:
    return f"/api/v1/projects/{project.slug}/predict"


def _instances(*values) -> dict:
    return {"instances": [{"image_base64": _b64(png_bytes(v, seed=v))} for v in values]}


def _without_ids(body: dict) -> dict:
    return {**body, "predictions": [{k: v for k, v in p.items() if k != "id"}
                                    for p in body["predictions"]]}


def test_a_remembered_token_is_answered_without_django_like_django(
        fast, django_app, served_project, key):
    body = _instances(2, 0)
    status, dj_headers, django_answer = call(fast, "POST", _url(served_project), key=key, body=body)
    assert status == 200 and django_app.calls == 1  # the token's first check is Django's
    status, headers, fast_answer = call(fast, "POST", _url(served_project), key=key, body=body)
    assert status == 200 and django_app.calls == 1
    assert _without_ids(fast_answer) == _without_ids(django_answer)
    assert [p["label"] for p in fast_answer["predictions"]] == ["2", "0"]
    assert {k: v for k, v in headers.items() if k != "Content-Length"} \
        == {k: v for k, v in dj_headers.items() if k != "Content-Length"}
    # Logged as the view logs: a row per prediction, its id and its instance kept.
    ids = [p["id"] for p in fast_answer["predictions"]]
    rows = {str(r.prediction_id): r for r in PredictionLog.objects.filter(outcome="ok")}
    assert len(rows) == 4 and set(ids) <= set(rows)
    first = rows[ids[0]]
    assert first.instance == body["instances"][0] and first.predicted_label == "2"
    assert first.token_id is not None and first.status_code == 200 and first.latency_ms > 0


@pytest.mark.parametrize("body, code", [
    ({"instances": [{"image_base64": "@@@"}]}, "invalid_instance"),
    ({"instances": [{"text": "hi"}]}, "invalid_instance"),
])
def test_refusals_of_the_service_get_the_views_body_and_log_row(
        fast, django_app, served_project, key, body, code):
    call(fast, "POST", _url(served_project), key=key, body=_instances(1))  # remembered now
    django_app.calls = 0
    status, _, answer = call(fast, "POST", _url(served_project), key=key, body=body)
    assert django_app.calls == 0 and status == 400 and answer["code"] == code
    assert (status, answer) == call(django_app, "POST", _url(served_project), key=key,
                                    body=body)[::2]
    assert PredictionLog.objects.filter(outcome="client_error", status_code=400).count() == 2


def test_everything_else_is_answered_by_django(fast, django_app, served_project, key, settings):
    url = _url(served_project)
    other = ProjectFactory()
    other_key = api_token_create(project=other, scopes=["predict"])[1]
    monitor_key = api_token_create(project=served_project, scopes=["monitor"])[1]
    for remembered_key in (key, other_key, monitor_key):  # each checked once by Django
        call(fast, "POST", _url(other) if remembered_key == other_key else url,
             key=remembered_key, body=_instances(1))
    django_app.calls = 0
    answers = {
        "unknown key": call(fast, "POST", url, key="nope", body=_instances(1)),
        "token of another project": call(fast, "POST", url, key=other_key, body=_instances(1)),
        "no predict scope": call(fast, "POST", url, key=monitor_key, body=_instances(1)),
        "pinned version": call(fast, "POST", url, key=key, body=_instances(1),
                               extra={"QUERY_STRING": "version=99"}),
        "not JSON": call(fast, "POST", url, key=key, body=b"{not json"),
        "no instances": call(fast, "POST", url, key=key, body={"instances": []}),
        "extra field": call(fast, "POST", url, key=key, body={**_instances(1), "x": 1}),
        "text/plain": call(fast, "POST", url, key=key, body=b"{}", content_type="text/plain"),
        "host not allowed": call(fast, "POST", url, key=key, body=_instances(1),
                                 extra={"HTTP_HOST": "evil.example"}),
    }
    settings.API_MAX_BODY_BYTES = 10
    answers["over the size limit"] = call(fast, "POST", url, key=key, body=_instances(1))
    assert django_app.calls == len(answers)
    codes = {name: (status, body.get("code") if isinstance(body, dict) else None)
             for name, (status, _headers, body) in answers.items()}
    assert codes == {
        "unknown key": (401, "authentication_failed"),
        "token of another project": (404, "not_found"),
        "no predict scope": (403, "permission_denied"),
        "pinned version": (404, "unknown_version"),
        "not JSON": (400, "parse_error"),
        "no instances": (400, "invalid"),
        "extra field": (400, "invalid"),
        "text/plain": (415, "unsupported_media_type"),
        "host not allowed": (400, None),
        "over the size limit": (413, "too_large"),
    }


def test_a_throttled_token_gets_djangos_429(fast, django_app, served_project, key, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "predict": "2/min"}
    answers = [call(fast, "POST", _url(served_project), key=key, body=_instances(1))
               for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429] and django_app.calls == 2
    assert answers[2][1]["Retry-After"] and answers[2][2]["code"] == "throttled"


def test_a_revoked_token_stops_within_the_cache_window(fast, django_app, served_project, key):
    from django.utils import timezone

    from annotation.models import ApiToken

    assert call(fast, "POST", _url(served_project), key=key, body=_instances(1))[0] == 200
    ApiToken.objects.update(revoked_at=timezone.now())
    assert call(fast, "POST", _url(served_project), key=key, body=_instances(1))[0] == 200
    remembered.forget()  # the window has passed
    assert call(fast, "POST", _url(served_project), key=key, body=_instances(1))[0] == 401


def test_an_unexpected_failure_is_logged_and_django_answers(
        fast, django_app, served_project, key, monkeypatch, caplog):
    call(fast, "POST", _url(served_project), key=key, body=_instances(1))

    def broken(**_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(predict_fast_path, "predict", broken)
    django_app.calls = 0
    status, _, answer = call(fast, "POST", _url(served_project), key=key, body=_instances(1))
    assert status == 200 and answer["predictions"][0]["label"] == "1" and django_app.calls == 1
    assert "predict fast path failed" in caplog.text
