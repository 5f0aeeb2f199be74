"""Text is checked where it enters: a 400 naming the field, and nothing written.

NUL characters and lone surrogates are valid Python strings that PostgreSQL (NUL in text
and jsonb) or any UTF-8 encoder (surrogates) refuses; letting one through failed an insert
later, far from the request. Run on PostgreSQL too (DATABASE_URL).
"""
import re

import pytest
from rest_framework.test import APIClient

from annotation.models import Project, Sample
from annotation.services import personal_token_create, project_create
from serving.instances import instances_featurize
from serving.models import PredictionLog
from tests.factories import ProjectFactory, UserFactory
from tests.serving.conftest import train_version


@pytest.fixture
def text_served(text_project_labeled):
    assert train_version(text_project_labeled).status == "ready"
    return text_project_labeled


def _post(client, project, endpoint, body):
    return client.post(f"/api/v1/projects/{project.slug}/{endpoint}", body, format="json")


def test_core_text_check_names_the_field_and_the_problem():
    from core.text import InvalidText, json_check, json_sanitize, text_check, text_sanitize

    assert text_check("fine é ✓", field="f") == "fine é ✓"
    for bad, why in (("a\x00b", "NUL"), ("a\ud800b", "lone surrogate U+D800"),
                     (5, "expected a string")):
        with pytest.raises(InvalidText, match=f"^f: .*{re.escape(why)}") as caught:
            text_check(bad, field="f")
        assert caught.value.status == 400 and caught.value.detail["field"] == "f"
    with pytest.raises(InvalidText, match="3 characters, more than 2"):
        text_check("abc", field="f", max_chars=2)
    with pytest.raises(InvalidText, match=r"^x\.a\[1\]: contains a NUL"):
        json_check({"a": ["ok", "b\x00"]}, field="x")
    with pytest.raises(InvalidText, match=r"^x\.a: has a key"):
        json_check({"a": {"k\ud800": 1}}, field="x")
    deep = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidText, match="nests deeper than 32"):
        json_check(deep, field="x")
    assert text_sanitize("a\x00b\udcff") == "a\ufffdb\ufffd"
    assert json_sanitize({"k\x00": ["v\ud800", 1]}) == {"k\ufffd": ["v\ufffd", 1]}


def test_predict_refuses_a_nul_in_a_text_naming_the_instance(text_served, token_client):
    client = token_client(text_served)
    response = _post(client, text_served, "predict",
                     {"instances": [{"text": "free cash"}, {"text": "free\u0000cash"}]})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"].startswith("instances[1].text: contains a NUL")
    assert body["detail"] == {"index": 1, "field": "instances[1].text"}
    assert not PredictionLog.objects.filter(outcome="ok").exists()
    ok = _post(client, text_served, "predict", {"instances": [{"text": "free cash"}]})
    assert ok.status_code == 200


def test_predict_refuses_a_text_over_the_sample_limit(text_served, token_client, settings):
    settings.IMPORT_MAX_TEXT_CHARS = 10
    response = _post(token_client(text_served), text_served, "predict",
                     {"instances": [{"text": "x" * 11}]})
    assert response.status_code == 400
    assert response.json()["error"] == "instances[0].text: 11 characters, more than 10"


def test_lone_surrogates_in_instances_are_refused_however_they_arrive(text_served):
    from core.text import InvalidText

    with pytest.raises(InvalidText, match=r"instances\[0\]\.text: is not valid Unicode"):
        instances_featurize(project=text_served, instances=[{"text": "a\ud800"}])
    # Escaped in JSON, orjson refuses them before any view code runs.
    client = APIClient()
    response = client.post(f"/api/v1/projects/{text_served.slug}/predict",
                           b'{"instances": [{"text": "a\\ud800"}]}',
                           content_type="application/json")
    assert response.status_code in (400, 401)


def test_tabular_instance_values_are_checked_by_column(db):
    from core.text import InvalidText

    project = ProjectFactory(kind="tabular", labels=["a", "b"], columns=["x", "colour"])
    with pytest.raises(InvalidText, match=r"^instances\[0\]\.colour: contains a NUL") as caught:
        instances_featurize(project=project, instances=[{"x": 1, "colour": "re\x00d"}])
    assert caught.value.detail == {"index": 0, "column": "colour", "field": "instances[0].colour"}


def test_feedback_refuses_a_nul_in_its_instance_and_writes_nothing(text_served, token_client):
    client = token_client(text_served, scopes=("feedback",))
    before = Sample.objects.count()
    response = _post(client, text_served, "feedback",
                     {"instance": {"text": "free\u0000lunch"}, "label": "spam"})
    assert response.status_code == 400, response.content
    assert response.json()["error"].startswith("instances[0].text: contains a NUL")
    assert Sample.objects.count() == before
    label = _post(client, text_served, "feedback",
                  {"instance": {"text": "free lunch"}, "label": "sp\u0000am"})
    assert label.status_code == 400 and label.json()["error"].startswith("label:")


def test_the_labeling_api_refuses_a_nul_in_the_value(project, annotator, make_samples):
    [sample] = make_samples(1)
    _token, key = personal_token_create(project=project, user=annotator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post(f"/api/v1/projects/{project.slug}/labels",
                           {"sample": sample.pk, "value": "0\u0000"}, format="json")
    assert response.status_code == 400 and response.json()["error"].startswith("value:")
    assert not sample.labels.exists()


@pytest.mark.parametrize("field,value", [("name", "News\udcff"), ("slug", "news\x00"),
                                         ("labels", ["pos", "n\x00eg"])])
def test_project_names_and_labels_are_checked(db, field, value):
    from core.text import InvalidText

    arguments = {"name": "News", "slug": "news", "labels": ["pos", "neg"], field: value}
    with pytest.raises(InvalidText, match=f"^{field}: "):
        project_create(owner=UserFactory(), kind="text", **arguments)
    assert not Project.objects.filter(slug__startswith="news").exists()


@pytest.mark.parametrize("kind", ["text", "tabular", "tabular, categories or null"])
@pytest.mark.parametrize("bad, why", [
    ("a\x00b", "NUL"), ("a\ud800b", "lone surrogate"), ("x" * 12, "more than 10"),
    (["a"], "must be a number, a string or null"), ({"a": 1}, "must be a number, a string or null"),
])
def test_a_batch_is_checked_at_once_and_its_bad_value_named(db, settings, kind, bad, why):
    """Batches are checked batch-wide first (one pass in C); a batch with one bad value in
    its third instance gets the same 400 as that instance alone would, naming it."""
    from core.errors import DomainError  # InvalidInstance, or InvalidText for a string

    settings.IMPORT_MAX_TEXT_CHARS = 10
    if kind == "text":
        project = ProjectFactory(kind=Project.Kind.TEXT)
        good, field = [{"text": "fine é ✓"}, {"text": "ok"}], "text"
        if isinstance(bad, (list, dict)):
            why = "a text project needs 'text', a string"
    else:
        project = ProjectFactory(kind=Project.Kind.TABULAR, columns=["n", "c"])
        other = True if kind == "tabular" else None  # checked apart: a column of str or None
        good, field = [{"n": 1.5, "c": "é"}, {"n": None, "c": other}], "c"
    for fine in (good + [dict(good[0])], good * 8):  # the second's strings add up to over 10
        assert instances_featurize(project=project, instances=fine) == (
            [i["text"] for i in fine] if kind == "text" else fine)
    batch = good + [{**good[0], field: bad}] + good
    with pytest.raises(DomainError, match=rf"^instances\[2\].*{re.escape(why)}"):
        instances_featurize(project=project, instances=batch)
