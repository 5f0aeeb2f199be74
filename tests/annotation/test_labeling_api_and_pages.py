"""Wiring of the labeling API (next, labels), personal tokens, and the skip/undo/review pages."""
import datetime as dt
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import hooks
from annotation.models import Label, LabelCounts, Lease
from annotation.services import personal_token_create
from serving.services import api_token_create
from tests.factories import MembershipFactory, ProjectFactory, UserFactory


def _member(project, role="annotator"):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


def _client(project, user) -> APIClient:
    _token, key = personal_token_create(project=project, user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_next_then_label_with_a_personal_token(project, annotator, make_samples):
    make_samples(2)
    api = _client(project, annotator)
    nxt = api.get(f"/api/v1/projects/{project.slug}/next")
    assert nxt.status_code == 200, nxt.content
    body = nxt.json()["sample"]
    assert body["kind"] == "image" and body["labels"] == ["0", "1", "2"] and body["lease_expires"]
    assert api.get(f"/api/v1/projects/{project.slug}/next").json()["sample"]["id"] == body["id"]  # held
    assert api.get(body["image_url"]).status_code == 200

    url = f"/api/v1/projects/{project.slug}/labels"
    created = api.post(url, {"sample": body["id"], "value": "1"}, format="json")
    assert created.status_code == 201 and created.json()["annotator"] == annotator.username
    again = api.post(url, {"sample": body["id"], "value": "1"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    assert Label.objects.count() == 1


def test_label_api_errors_are_json_and_write_nothing(project, annotator, make_samples):
    first, second = make_samples(2)
    other_project = ProjectFactory()
    from tests.factories import ImageSampleFactory

    foreign = ImageSampleFactory(project=other_project)
    api = _client(project, annotator)
    url = f"/api/v1/projects/{project.slug}/labels"
    leased = api.get(f"/api/v1/projects/{project.slug}/next").json()["sample"]["id"]

    bad = api.post(url, {"sample": leased, "value": "cat"}, format="json")
    assert bad.status_code == 400 and "cat" in bad.json()["error"] and bad.json()["detail"]
    assert bad.json()["code"] == "invalid_label"
    outside = api.post(url, {"sample": foreign.pk, "value": "1"}, format="json")
    assert outside.status_code == 404 and outside.json() == {
        "error": "that sample is not part of this project", "code": "not_found",
        "detail": {"sample": foreign.pk}}
    missing = api.post(url, {"value": "1"}, format="json")
    assert missing.status_code == 400 and missing.json()["error"].startswith("sample")
    assert missing.json()["code"] == "invalid"

    rival = _member(project)
    taken = _client(project, rival).post(url, {"sample": leased, "value": "1"}, format="json")
    assert taken.status_code == 409 and "leased by another" in taken.json()["error"]

    # Expired and re-leased to someone else: 409; expired and free: accepted.
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert _client(project, rival).get(f"/api/v1/projects/{project.slug}/next").json()["sample"]["id"] == leased
    assert api.post(url, {"sample": leased, "value": "1"}, format="json").status_code == 409
    assert not Label.objects.exists()


def test_the_labeling_api_records_the_suggestion_shown_but_never_on_a_test_sample(
        project, annotator, make_samples):
    from learning.models import ModelVersion

    make_samples(2, n_test=1)
    ModelVersion.objects.create(project=project, number=3, status="ready", is_served=True)
    api = _client(project, annotator)
    url = f"/api/v1/projects/{project.slug}/labels"
    recorded, sent = {}, iter([3, None, 3])
    while (sample := api.get(f"/api/v1/projects/{project.slug}/next").json()["sample"]):
        if sample["split"] == "pool":
            for bad in (0, "x", 2**31):
                refused = api.post(url, {"sample": sample["id"], "value": "1",
                                         "suggested_version": bad}, format="json")
                assert refused.status_code == 400 and refused.json()["code"] == "invalid"
                assert refused.json()["error"].startswith("suggested_version")
        body = {"sample": sample["id"], "value": "1"}
        suggested = next(sent)
        if suggested is not None or sample["split"] == "test":
            body["suggested_version"] = suggested
        answer = api.post(url, body, format="json")
        assert answer.status_code == 201
        recorded[(sample["split"], suggested)] = (answer.json()["served_version"],
                                                  answer.json()["suggested_version"])
    # A held-out sample is never shown a suggestion (the page shows none): null, not refused.
    assert sorted(recorded.items(), key=repr) == sorted({
        ("pool", 3): (3, 3), ("pool", None): (3, None), ("test", 3): (3, None)}.items(),
        key=repr)
    assert sorted(Label.objects.values_list("sample__split", "served_version",
                                            "suggested_version"), key=repr) == sorted(
        [("pool", 3, 3), ("pool", 3, None), ("test", 3, None)], key=repr)


def test_label_api_refuses_non_members_project_tokens_and_anonymous(project, make_samples):
    (sample,) = make_samples(1)
    outsider = UserFactory()
    elsewhere = ProjectFactory()
    MembershipFactory(project=elsewhere, user=outsider, role="annotator")
    api = _client(elsewhere, outsider)
    response = api.get(f"/api/v1/projects/{project.slug}/next")
    unknown = api.get("/api/v1/projects/no-such-project/next")
    assert response.status_code == unknown.status_code == 404  # existence does not leak
    assert response.json()["error"].replace(project.slug, "no-such-project") == unknown.json()["error"]

    session = APIClient()
    session.force_login(outsider)
    denied = session.post(f"/api/v1/projects/{project.slug}/labels", {"sample": sample.pk, "value": "1"},
                          format="json")
    assert denied.status_code == 404 and "can reach" in denied.json()["error"]  # a non-member

    _token, key = api_token_create(project=project, scopes=["predict", "admin"])
    machine = APIClient()
    machine.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert machine.get(f"/api/v1/projects/{project.slug}/next").status_code == 403
    assert APIClient().get(f"/api/v1/projects/{project.slug}/next").status_code == 401
    assert APIClient().get("/api/v1/projects/nope/next").status_code in (401, 404)
    assert not Label.objects.exists()


def test_next_returns_null_when_the_queue_is_empty(project, annotator):
    response = _client(project, annotator).get(f"/api/v1/projects/{project.slug}/next")
    assert response.status_code == 200 and response.json() == {"sample": None}


def test_personal_tokens_cannot_predict_but_project_tokens_still_can_authenticate(project, annotator):
    api = _client(project, annotator)
    response = api.post(f"/api/v1/projects/{project.slug}/predict", {"instances": []}, format="json")
    assert response.status_code == 403


def test_create_user_with_token_prints_a_working_key(project, make_samples, capsys):
    make_samples(1)
    call_command("create_user", "carla", "--project", project.slug, "--role", "annotator", "--token")
    out = capsys.readouterr().out
    key = re.search(r"^token: (\S+)$", out, re.M).group(1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    sample = api.get(f"/api/v1/projects/{project.slug}/next").json()["sample"]
    labeled = api.post(f"/api/v1/projects/{project.slug}/labels",
                       {"sample": sample["id"], "value": "2"}, format="json")
    assert labeled.status_code == 201 and labeled.json()["annotator"] == "carla"


def _shown(response) -> int | None:
    match = re.search(rb'data-sample="(\d*)"', response.content)
    return int(match.group(1)) if match and match.group(1) else None


def test_skip_and_undo_pages_swap_the_card(client, project, annotator, make_samples):
    make_samples(3)
    client.force_login(annotator)
    url = f"/projects/{project.slug}/label/"
    first = _shown(client.get(url))
    skipped = client.post(url + "skip", {"sample": first}, HTTP_HX_REQUEST="true")
    assert b"<html" not in skipped.content
    second = _shown(skipped)
    assert second not in (None, first)
    labeled = client.post(url, {"sample": second, "value": "1"}, HTTP_HX_REQUEST="true")
    third = _shown(labeled)
    assert third not in (first, second)
    undone = client.post(url + "undo", HTTP_HX_REQUEST="true")
    assert _shown(undone) == second
    assert b"nothing" not in undone.content.lower()
    again = client.post(url + "undo", HTTP_HX_REQUEST="true")
    assert b"no label of yours to undo" in again.content and _shown(again) == second


def test_card_loads_suggestion_after_render_and_prefetches_the_next_image(client, project, annotator,
                                                                         make_samples, monkeypatch):
    from learning.models import ModelVersion

    make_samples(3)
    ModelVersion.objects.create(project=project, number=1, status="ready", is_served=True, accuracy=0.9)
    client.force_login(annotator)
    page = client.get(f"/projects/{project.slug}/label/")
    shown = _shown(page)
    assert f'hx-get="/projects/{project.slug}/samples/{shown}/suggestion"'.encode() in page.content
    assert b'hx-trigger="load"' in page.content
    assert b'rel="prefetch"' in page.content and b"test acc <b>0.90</b>" in page.content

    from serving.suggestions import Suggestion

    monkeypatch.setitem(hooks._registry, "suggestions", lambda *, project, samples: {
        samples[0].pk: Suggestion(label="2", confidence=0.81, model_version=1)})
    hint = client.get(f"/projects/{project.slug}/samples/{shown}/suggestion", HTTP_HX_REQUEST="true")
    assert b'data-label="2"' in hint.content and b"81% sure" in hint.content and b"<html" not in hint.content

    project.show_suggestion = False
    project.save(update_fields=["show_suggestion"])
    assert b"suggestion" not in client.get(f"/projects/{project.slug}/label/").content.split(b"<main>")[1].split(b"keys-help")[0]


def _label_as_the_page_does(client, project, page, *, load_suggestion: bool):
    """Post the card's label form as the browser does: its own fields, and (with the
    suggestion loaded, swapped in by htmx) the partial's inputs of ``form="label-form"``."""
    shown = _shown(page)
    data = {"sample": shown, "value": "1", "duration_ms": "800"}
    if load_suggestion and f"/samples/{shown}/suggestion".encode() in page.content:
        hint = client.get(f"/projects/{project.slug}/samples/{shown}/suggestion",
                          HTTP_HX_REQUEST="true")
        for name, value in re.findall(rb'<input type="hidden" name="(\w+)" value="(\d+)"'
                                      rb' form="label-form">', hint.content):
            data[name.decode()] = value.decode()
    answer = client.post(f"/projects/{project.slug}/label/", data, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200 and b'class="error"' not in answer.content
    label = Label.objects.get(sample_id=shown)
    return answer, (label.sample.split, label.served_version, label.suggested_version)


def test_a_page_label_records_the_served_version_and_the_suggestion_the_card_showed(
        client, project, annotator, make_samples, monkeypatch):
    from learning.models import ModelVersion
    from serving.suggestions import Suggestion

    make_samples(3, n_test=1)
    monkeypatch.setitem(hooks._registry, "suggestions", lambda *, project, samples: {
        sample.pk: Suggestion(label="2", confidence=0.8, model_version=4) for sample in samples})
    client.force_login(annotator)
    page = client.get(f"/projects/{project.slug}/label/")
    # No model yet: nothing served, nothing suggested.
    page, recorded = _label_as_the_page_does(client, project, page, load_suggestion=True)
    assert recorded == ("test", None, None)  # the queue hands the held-out share first
    ModelVersion.objects.create(project=project, number=4, status="ready", is_served=True)
    page = client.get(f"/projects/{project.slug}/label/")
    page, recorded = _label_as_the_page_does(client, project, page, load_suggestion=True)
    assert recorded == ("pool", 4, 4)  # the suggestion was shown
    page, recorded = _label_as_the_page_does(client, project, page, load_suggestion=False)
    assert recorded == ("pool", 4, None)  # labeled before the suggestion loaded
    project.show_suggestion = False
    project.save(update_fields=["show_suggestion"])
    page = client.get(f"/projects/{project.slug}/label/")
    page, recorded = _label_as_the_page_does(client, project, page, load_suggestion=True)
    assert recorded == ("pool", 4, None)  # suggestions off: none shown


def test_the_suggestion_partial_joins_its_version_to_the_label_form_only_when_shown(
        client, project, annotator, make_samples, monkeypatch):
    from learning.models import ModelVersion
    from serving.suggestions import Suggestion

    (pool,), (test,) = make_samples(1), make_samples(0, n_test=1)
    ModelVersion.objects.create(project=project, number=5, status="ready", is_served=True)
    monkeypatch.setitem(hooks._registry, "suggestions", lambda *, project, samples: {
        sample.pk: Suggestion(label="2", confidence=0.8, model_version=5) for sample in samples})
    client.force_login(annotator)
    field = b'<input type="hidden" name="suggested_version" value="5" form="label-form">'
    for sample, shown in ((pool, True), (test, False)):
        hint = client.get(f"/projects/{project.slug}/samples/{sample.pk}/suggestion",
                          HTTP_HX_REQUEST="true")
        assert (field in hint.content) is shown
    monkeypatch.setitem(hooks._registry, "suggestions", lambda *, project, samples: {})
    hint = client.get(f"/projects/{project.slug}/samples/{pool.pk}/suggestion",
                      HTTP_HX_REQUEST="true")
    assert b"No suggestion for this sample" in hint.content and b"suggested_version" not in hint.content


def test_the_page_refuses_an_unknown_label_with_the_ledgers_one_message(client, project,
                                                                         annotator, make_samples):
    make_samples(1)
    client.force_login(annotator)
    shown = _shown(client.get(f"/projects/{project.slug}/label/"))
    for data, message in (
        ({"value": "cat"}, f"&#x27;cat&#x27; is not a label of project &#x27;{project.slug}&#x27;"),
        ({"value": "1", "suggested_version": "0"}, "greater than or equal to 1"),
    ):
        answer = client.post(f"/projects/{project.slug}/label/", {"sample": shown, **data},
                             HTTP_HX_REQUEST="true")
        assert message.encode() in answer.content, answer.content
    assert not Label.objects.exists()


def test_annotators_see_labeling_pages_only(client, project, annotator):
    client.force_login(annotator)
    base = f"/projects/{project.slug}"
    for path in ("/review/", "/settings/", "/import/", "/export.csv"):
        assert client.get(base + path).status_code == 403, path
    assert client.get(base + "/").status_code == 302
    listing = client.get("/")
    assert b"Review" not in listing.content and f'href="{base}/"'.encode() not in listing.content


def test_review_page_and_correction_wiring(client, project, make_samples):
    from annotation.services import label_submit, sample_lease_next

    make_samples(2)
    annotator = _member(project)
    sample = sample_lease_next(project=project, annotator=annotator)
    label_submit(sample=sample, annotator=annotator, value="0")
    client.force_login(project.owner)
    page = client.get(f"/projects/{project.slug}/review/")
    assert page.status_code == 200 and f'id="review-{sample.pk}"'.encode() in page.content
    partial = client.get(f"/projects/{project.slug}/review/?label=0", HTTP_HX_REQUEST="true")
    assert b'id="review-rows"' in partial.content and b"<html" not in partial.content
    row = client.post(f"/projects/{project.slug}/review/{sample.pk}/correct", {"value": "2"},
                      HTTP_HX_REQUEST="true")
    assert row.status_code == 200 and b"<b>2</b>" in row.content
    assert Label.objects.filter(sample=sample).count() == 2
    bad = client.post(f"/projects/{project.slug}/review/{sample.pk}/correct", {"value": "x"})
    assert bad.status_code == 400 and b"is not a label" in bad.content


def test_settings_page_saves_and_shows_errors(client, project):
    client.force_login(project.owner)
    url = f"/projects/{project.slug}/settings/"
    assert client.get(url).status_code == 200
    bad = client.post(url, {"overlap": 2, "keys": "ab", "batch_size": 5})
    assert bad.status_code == 400 and b"one key per label" in bad.content
    ok = client.post(url, {"overlap": 2, "keys": "jkl", "batch_size": 5, "show_suggestion": "on"})
    assert ok.status_code == 200 and b"Saved." in ok.content
    project.refresh_from_db()
    assert (project.overlap, project.keys) == (2, ["j", "k", "l"])


def test_text_is_escaped_and_tabular_rows_show_as_a_table(client, db):
    from annotation.models import Sample

    text_project = ProjectFactory(kind="text", labels=["pos", "neg"])
    table_project = ProjectFactory(kind="tabular", labels=["a", "b"])
    Sample.objects.create(project=text_project, text="<script>alert(1)</script> hi")
    Sample.objects.create(project=table_project, values={"age": 41, "<b>city</b>": "Oslo"})
    for project, expected, absent in (
        (text_project, b"&lt;script&gt;alert(1)&lt;/script&gt; hi", b"<script>alert(1)"),
        (table_project, b'<th scope="row">&lt;b&gt;city&lt;/b&gt;</th><td>Oslo</td>', b"<b>city</b>"),
    ):
        user = _member(project)
        client.force_login(user)
        page = client.get(f"/projects/{project.slug}/label/")
        assert expected in page.content and absent not in page.content


def test_next_and_label_check_the_role_once_per_request(project, annotator, make_samples):
    make_samples(3)
    LabelCounts.objects.create(project=project)  # as project_create makes it; else counted once
    api = _client(project, annotator)
    with CaptureQueriesContext(connection) as next_queries:
        sample = api.get(f"/api/v1/projects/{project.slug}/next").json()["sample"]
    with CaptureQueriesContext(connection) as label_queries:
        created = api.post(f"/api/v1/projects/{project.slug}/labels",
                           {"sample": sample["id"], "value": "1"}, format="json")
    assert created.status_code == 201
    for queries in (next_queries, label_queries):
        sqls = [q["sql"] for q in queries]
        role_checks = [sql for sql in sqls if "annotation_membership" in sql]
        # The project comes with the role check (and the token); no look-up of its own.
        project_loads = [sql for sql in sqls if "annotation_project" in sql
                         and "annotation_membership" not in sql and "annotation_apitoken" not in sql]
        assert len(role_checks) == 1 and project_loads == [], sqls
