"""The WSGI fast path for next/labels answers like the DRF views, and hands Django the rest."""
import io
import json
from wsgiref.util import setup_testing_defaults

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.core.validators import RegexValidator
from django.db import close_old_connections, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers

from annotation import label_limits, labeling_fast_path
from annotation.labeling_fast_path import LabelingFastPath
from annotation.models import Label, Project
from annotation.services import personal_token_create
from core import remembered as token_cache
from annotation.models import ApiToken
from tests.factories import ImageSampleFactory, MembershipFactory, ProjectFactory, UserFactory


class _CountingDjango:
    """Django's WSGI app, counting the requests the fast path handed to it."""

    def __init__(self) -> None:
        self.app, self.calls = WSGIHandler(), 0

    def __call__(self, environ, start_response):
        self.calls += 1
        # As Django's test client does: a request's end must not close the test's connection.
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            return self.app(environ, start_response)
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)


@pytest.fixture
def django_app():
    return _CountingDjango()


@pytest.fixture
def fast(django_app):
    token_cache.forget()
    yield LabelingFastPath(django_app)
    token_cache.forget()


def call(app, method, path, *, key=None, body=None, content_type="application/json", extra=None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "testserver",
               "HTTP_HOST": "testserver", **(extra or {})}
    if key is not None:
        environ["HTTP_AUTHORIZATION"] = f"Token {key}"
    raw = b""
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        environ["CONTENT_TYPE"] = content_type
    environ["CONTENT_LENGTH"] = str(len(raw))
    environ["wsgi.input"] = io.BytesIO(raw)
    setup_testing_defaults(environ)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = int(status.split()[0]), dict(headers)

    content = b"".join(app(environ, start_response))
    is_json = captured["headers"].get("Content-Type", "").startswith("application/json")
    return captured["status"], captured["headers"], (json.loads(content) if is_json else content)


def _key(project, user) -> str:
    return personal_token_create(project=project, user=user)[1]


@pytest.fixture
def labeler(project, annotator, make_samples):
    make_samples(3)
    return _key(project, annotator)


def test_next_and_label_are_answered_without_django_and_match_its_answers(
        fast, django_app, project, annotator, labeler):
    next_url, labels_url = (f"/api/v1/projects/{project.slug}/{a}" for a in ("next", "labels"))
    status, headers, fast_next = call(fast, "GET", next_url, key=labeler)
    assert status == 200 and django_app.calls == 0
    # Django's view gives the held lease back: the very same answer, field for field.
    dj_status, dj_headers, django_next = call(django_app, "GET", next_url, key=labeler)
    assert dj_status == 200 and fast_next == django_next
    assert fast_next["sample"]["lease_expires"] and fast_next["sample"]["labels"] == project.labels
    assert {k: v for k, v in headers.items() if k != "Content-Length"} \
        == {k: v for k, v in dj_headers.items() if k != "Content-Length"}

    sample_id = fast_next["sample"]["id"]
    django_app.calls = 0
    status, _, created = call(fast, "POST", labels_url, key=labeler,
                              body={"sample": sample_id, "value": "1", "duration_ms": 900})
    assert status == 201 and django_app.calls == 0
    assert created["annotator"] == annotator.username and created["duration_ms"] == 900
    label = Label.objects.get()
    assert (label.sample_id, label.value, label.annotator_id) == (sample_id, "1", annotator.pk)
    # A repeat is idempotent on both paths, with the same body.
    assert call(fast, "POST", labels_url, key=labeler, body={"sample": sample_id, "value": "1"})[::2] \
        == (200, created)
    assert call(django_app, "POST", labels_url, key=labeler,
                body={"sample": sample_id, "value": "1"})[::2] == (200, created)
    assert Label.objects.count() == 1


def test_refusals_of_the_services_get_the_apis_error_bodies(
        fast, django_app, project, annotator, labeler):
    labels_url = f"/api/v1/projects/{project.slug}/labels"
    leased = call(fast, "GET", f"/api/v1/projects/{project.slug}/next", key=labeler)[2]["sample"]["id"]
    foreign = ImageSampleFactory(project=ProjectFactory())
    rival = UserFactory()
    MembershipFactory(project=project, user=rival, role="annotator")
    rival_key = _key(project, rival)
    cases = [
        (labeler, {"sample": leased, "value": "cat"}, 400, "invalid_label"),
        (labeler, {"sample": foreign.pk, "value": "1"}, 404, "not_found"),
        (rival_key, {"sample": leased, "value": "1"}, 409, "sample_not_available"),
    ]
    for key, body, expected, code in cases:
        django_app.calls = 0
        fast_answer = call(fast, "POST", labels_url, key=key, body=body)
        assert django_app.calls == 0
        assert fast_answer[0] == expected and set(fast_answer[2]) == {"error", "code", "detail"}
        assert fast_answer[2]["code"] == code
        assert fast_answer[::2] == call(django_app, "POST", labels_url, key=key, body=body)[::2]
    assert not Label.objects.exists()


@pytest.mark.parametrize("body", [
    {"sample": "1", "value": "1"},          # DRF coerces the string: Django decides
    {"sample": 1, "value": " 1 "},          # DRF trims
    {"sample": 1},                          # missing value: DRF's 400 wording
    {"sample": 1, "value": "1", "extra": True},
    {"sample": 1, "value": "1", "duration_ms": None},
    {"sample": 1, "value": "1", "suggested_version": "2"},  # DRF coerces: Django decides
    b"{not json",
])
def test_bodies_drf_might_read_differently_go_to_django_intact(
        fast, django_app, project, labeler, body):
    sample_id = call(fast, "GET", f"/api/v1/projects/{project.slug}/next", key=labeler)[2]["sample"]["id"]
    if isinstance(body, dict) and body.get("sample") in ("1", 1):
        body = {**body, "sample": str(sample_id) if body["sample"] == "1" else sample_id}
    django_app.calls = 0
    fast_answer = call(fast, "POST", f"/api/v1/projects/{project.slug}/labels", key=labeler, body=body)
    assert django_app.calls == 1
    # Django read the same body: a coerced or trimmed label is recorded, the rest refused.
    if isinstance(body, dict) and "value" in body and "extra" not in body and "duration_ms" not in body:
        assert fast_answer[0] == 201
    elif isinstance(body, dict) and "extra" in body:
        assert fast_answer[0] == 201  # unknown keys are ignored by DRF
    else:
        assert fast_answer[0] == 400 and "error" in fast_answer[2]


def test_callers_it_cannot_vouch_for_are_answered_by_django(
        fast, django_app, project, labeler, settings):
    next_url = f"/api/v1/projects/{project.slug}/next"
    outsider = UserFactory()
    elsewhere = ProjectFactory()
    MembershipFactory(project=elsewhere, user=outsider, role="annotator")
    other_key = _key(elsewhere, outsider)
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "read": "1/min"}
    throttled = [call(fast, "GET", next_url, key=labeler) for _ in range(2)]
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "read": "100000/min"}
    django_app.calls = 0
    answers = {
        "no token": call(fast, "GET", next_url),
        "unknown key": call(fast, "GET", next_url, key="nope"),
        "token of another project": call(fast, "GET", next_url, key=other_key),
        "unknown project": call(fast, "GET", "/api/v1/projects/nope/next", key=labeler),
        "HEAD": call(fast, "HEAD", next_url, key=labeler),
        "host not allowed": call(fast, "GET", next_url, key=labeler,
                                 extra={"HTTP_HOST": "evil.example"}),
    }
    assert django_app.calls == len(answers)
    codes = {name: (status, body.get("code") if isinstance(body, dict) else None)
             for name, (status, _headers, body) in answers.items()}
    assert codes["no token"] == (401, "not_authenticated")
    assert codes["unknown key"] == (401, "authentication_failed")
    assert codes["token of another project"] == codes["unknown project"] == (404, "not_found")
    assert codes["host not allowed"][0] == 400  # Django's own page, before any view
    assert [t[0] for t in throttled] == [200, 429] and throttled[1][1]["Retry-After"]
    assert throttled[1][2]["code"] == "throttled"


def test_a_revoked_token_or_role_stops_working_within_the_cache_window(
        fast, django_app, project, annotator, labeler, settings):
    next_url = f"/api/v1/projects/{project.slug}/next"
    settings.API_TOKEN_CACHE_SECONDS = 0.0
    assert call(fast, "GET", next_url, key=labeler)[0] == 200
    ApiToken.objects.update(revoked_at=timezone.now())
    assert call(fast, "GET", next_url, key=labeler)[0] == 401

    ApiToken.objects.update(revoked_at=None)
    settings.API_TOKEN_CACHE_SECONDS = 60.0
    assert call(fast, "GET", next_url, key=labeler)[0] == 200
    project.memberships.filter(user=annotator).delete()
    django_app.calls = 0
    assert call(fast, "GET", next_url, key=labeler)[0] == 200  # remembered for the window
    assert django_app.calls == 0
    token_cache.forget()
    assert call(fast, "GET", next_url, key=labeler)[0] == 404  # no longer a member: as unknown


def test_an_unexpected_failure_is_logged_and_django_answers(
        fast, django_app, project, labeler, monkeypatch, caplog):
    def broken(**_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(labeling_fast_path, "sample_lease_next", broken)
    status, _, body = call(fast, "GET", f"/api/v1/projects/{project.slug}/next", key=labeler)
    assert status == 200 and body["sample"]["id"] and django_app.calls == 1
    assert "labeling fast path failed" in caplog.text


def test_https_responses_carry_hsts_as_djangos_do(fast, project, labeler, settings):
    settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = 3600, True
    django_app = _CountingDjango()  # its middleware reads the settings when it is built
    fast.app = django_app
    next_url = f"/api/v1/projects/{project.slug}/next"
    https = {"wsgi.url_scheme": "https", "HTTPS": "on"}
    fast_headers = call(fast, "GET", next_url, key=labeler, extra=https)[1]
    assert django_app.calls == 0
    django_headers = call(django_app, "GET", next_url, key=labeler, extra=https)[1]
    assert fast_headers["Strict-Transport-Security"] == django_headers["Strict-Transport-Security"] \
        == "max-age=3600; includeSubDomains"


def test_other_paths_and_methods_pass_through(fast, django_app, project, labeler):
    call(fast, "GET", f"/api/v1/projects/{project.slug}/labels", key=labeler)
    call(fast, "POST", f"/api/v1/projects/{project.slug}/next", key=labeler, body={})
    call(fast, "GET", "/api/v1/projects/", key=labeler)
    assert django_app.calls == 3


def test_https_behind_a_proxy_is_recognised_as_django_recognises_it(fast, project, labeler, settings):
    settings.SECURE_HSTS_SECONDS = 60
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    django_app = _CountingDjango()
    fast.app = django_app
    next_url = f"/api/v1/projects/{project.slug}/next"
    proxied = {"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "https"}
    fast_headers = call(fast, "GET", next_url, key=labeler, extra=proxied)[1]
    assert django_app.calls == 0
    assert fast_headers == {**call(django_app, "GET", next_url, key=labeler, extra=proxied)[1],
                            "Content-Length": fast_headers["Content-Length"]}
    assert fast_headers["Strict-Transport-Security"] == "max-age=60"


def _both(fast, django_app, url, key, body):
    """The same request through the fast path and through Django (DRF), each from the same
    database state: ``[(status, body, answered by the fast path itself), (status, body)]``."""
    answers = []
    for app in (fast, django_app):
        before = django_app.calls
        with transaction.atomic():
            status, _headers, answer = call(app, "POST", url, key=key, body=body)
            transaction.set_rollback(True)
        if isinstance(answer, dict):  # a new label's id and time differ from run to run
            answer = {k: v for k, v in answer.items() if k not in ("id", "created_at")}
        answers.append((status, answer, django_app.calls == before))
    return answers[0], answers[1][:2]


_LIMITS = label_limits


@pytest.mark.parametrize("change, status", [
    ({"value": "v" * _LIMITS.VALUE_MAX_LENGTH}, 201),
    ({"value": "v" * (_LIMITS.VALUE_MAX_LENGTH + 1)}, 400),
    ({"value": ""}, 400),
    ({"value": "1\x00"}, 400),  # DRF refuses NUL characters before the label set is asked
    ({"duration_ms": _LIMITS.DURATION_MS_MIN}, 201),
    ({"duration_ms": _LIMITS.DURATION_MS_MIN - 1}, 400),
    ({"duration_ms": _LIMITS.DURATION_MS_MAX}, 201),
    ({"duration_ms": _LIMITS.DURATION_MS_MAX + 1}, 400),
    ({"sample": _LIMITS.SAMPLE_ID_MIN - 1}, 400),
    ({"sample": _LIMITS.SAMPLE_ID_MAX}, 404),  # within bounds: the project has no such sample
    ({"sample": _LIMITS.SAMPLE_ID_MAX + 1}, 400),
    ({"suggested_version": None}, 201),  # none shown: null is taken as absent
    ({"suggested_version": _LIMITS.VERSION_MIN}, 201),
    ({"suggested_version": _LIMITS.VERSION_MIN - 1}, 400),
    ({"suggested_version": _LIMITS.VERSION_MAX}, 201),
    ({"suggested_version": _LIMITS.VERSION_MAX + 1}, 400),  # wider than the column
])
def test_each_input_limit_is_the_same_on_both_paths_at_its_boundary(
        fast, django_app, project, labeler, change, status):
    # Labels as long as the limit and one longer: only the limit can refuse the longer one.
    Project.objects.filter(pk=project.pk).update(labels=[
        *project.labels, "v" * _LIMITS.VALUE_MAX_LENGTH, "v" * (_LIMITS.VALUE_MAX_LENGTH + 1)])
    slug = project.slug
    sample_id = call(fast, "GET", f"/api/v1/projects/{slug}/next", key=labeler)[2]["sample"]["id"]
    body = {"sample": sample_id, "value": "1", **change}
    (fast_status, fast_body, answered_itself), drf = _both(
        fast, django_app, f"/api/v1/projects/{slug}/labels", labeler, body)
    assert (fast_status, fast_body) == drf
    assert fast_status == status
    # Within the limits the fast path answers; past one it leaves the refusal to DRF.
    assert answered_itself == (status != 400)


@pytest.mark.parametrize("slack, status", [(0, 201), (-1, 413)])
def test_the_body_size_limit_is_the_same_on_both_paths_at_its_boundary(
        fast, django_app, project, labeler, settings, slack, status):
    slug = project.slug
    sample_id = call(fast, "GET", f"/api/v1/projects/{slug}/next", key=labeler)[2]["sample"]["id"]
    body = json.dumps({"sample": sample_id, "value": "1"}).encode()
    settings.API_MAX_BODY_BYTES = len(body) + slack
    (fast_status, fast_body, answered_itself), drf = _both(
        fast, django_app, f"/api/v1/projects/{slug}/labels", labeler, body)
    assert (fast_status, fast_body) == drf
    assert fast_status == status and answered_itself == (status == 201)
    if status == 413:
        assert fast_body["detail"] == {"content_length": len(body), "max_body_bytes": len(body) - 1}


@pytest.fixture
def moved_routes(settings):
    """A URLconf where annotation/api_urls.py's two labeling routes have other paths."""
    settings.ROOT_URLCONF = "tests.annotation.moved_labeling_urls"  # clears Django's URL caches


def test_a_route_renamed_in_the_urlconf_moves_the_fast_path_with_it(
        fast, django_app, project, labeler, moved_routes):
    slug = project.slug
    next_url, labels_url = reverse("api-next", args=[slug]), reverse("api-labels", args=[slug])
    assert next_url == f"/api/v1/projects/{slug}/queue/next-sample"
    status, _, answer = call(fast, "GET", next_url, key=labeler)
    assert status == 200 and answer["sample"]["id"] and django_app.calls == 0
    status, _, label = call(fast, "POST", labels_url, key=labeler,
                            body={"sample": answer["sample"]["id"], "value": "1"})
    assert status == 201 and label["value"] == "1" and django_app.calls == 0
    # The old paths are not the fast path's any more: Django gets them, and knows them no more.
    assert call(fast, "GET", f"/api/v1/projects/{slug}/next", key=labeler)[0] == 404
    assert call(fast, "POST", f"/api/v1/projects/{slug}/labels", key=labeler,
                body={"sample": answer["sample"]["id"], "value": "1"})[0] == 404
    assert django_app.calls == 2


class _Checked(serializers.Serializer):
    sample = serializers.IntegerField(min_value=1, max_value=9)
    value = serializers.CharField(max_length=5, required=False)
    version = serializers.IntegerField(min_value=1, required=False, allow_null=True)


def test_input_checks_come_from_the_serializers_fields():
    checks, required = labeling_fast_path._input_checks(_Checked)
    assert checks == {"sample": (int, 1, 9, False), "value": (str, 1, 5, False),
                      "version": (int, 1, None, True)}
    assert required == {"sample"}


@pytest.mark.parametrize("suggested", [None, 1, 2, "absent"])
def test_a_suggested_version_is_recorded_and_answered_alike_on_both_paths(
        fast, django_app, project, labeler, suggested):
    from learning.models import ModelVersion

    ModelVersion.objects.create(project=project, number=2, status="ready", is_served=True)
    slug = project.slug
    sample_id = call(fast, "GET", f"/api/v1/projects/{slug}/next", key=labeler)[2]["sample"]["id"]
    body = {"sample": sample_id, "value": "1"}
    if suggested != "absent":
        body["suggested_version"] = suggested
    (fast_status, fast_body, answered_itself), drf = _both(
        fast, django_app, f"/api/v1/projects/{slug}/labels", labeler, body)
    assert (fast_status, fast_body) == drf and answered_itself
    recorded = None if suggested == "absent" else suggested
    assert fast_status == 201
    assert (fast_body["served_version"], fast_body["suggested_version"]) == (2, recorded)
    # And what the answer says is what the row holds.
    status, _, created = call(fast, "POST", f"/api/v1/projects/{slug}/labels", key=labeler,
                              body=body)
    assert status == 201
    assert Label.objects.values_list("served_version", "suggested_version").get(
        pk=created["id"]) == (2, recorded)


@pytest.mark.parametrize("field, method", [
    (serializers.CharField(validators=[RegexValidator("^[a-z]+$")]), None),
    (serializers.EmailField(), None),
    (serializers.FloatField(), None),
    (serializers.CharField(), "validate_value"),
])
def test_a_serializer_the_fast_path_cannot_mirror_is_refused_when_it_loads(field, method):
    attrs = {"value": field}
    if method:
        attrs[method] = lambda self, value: value
    with pytest.raises(TypeError):
        labeling_fast_path._input_checks(type("Input", (serializers.Serializer,), attrs))
