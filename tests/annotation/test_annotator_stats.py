"""The annotators page and API: numbers on a constructed dataset, κ, roles, windows, queries.

The dataset (``_dataset``): a text project with overlap 2, labels x and y, and three
annotators, every label at a known time and duration:

    sample  split  alice  bob  carol
    s1      pool   x      x
    s2      pool   x      y
    s3      pool   y      y
    s4      pool          -    x   (alice x)
    s5      pool          x    x
    s6      pool          -    y   (alice y)
    s7      test          x    x
    s8      pool   x (undone by alice)
    s9      pool               skipped by carol

Pairs (current labels): alice-bob s1-s3, table [[1,1],[0,1]]: p_o = 2/3, p_e = 4/9,
κ = 0.4; alice-carol s4, s6: κ = 1; bob-carol s5, s7, all x: κ undefined ("—").
Fleiss over s1-s7 (two raters each): P̄ = 6/7; x 9 of 14, y 5 of 14, P̄_e = 106/196;
κ = (168 - 106) / 90 = 62/90.
"""
import datetime as dt
import re
from collections import namedtuple

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient
from sklearn.metrics import cohen_kappa_score

from annotation import hooks
from annotation.annotator_stats import annotator_stats
from annotation.models import Label, Lease, Sample
from annotation.services import label_correct, label_undo_last, sample_skip
from serving.services import api_token_create
from tests.factories import MembershipFactory, ProjectFactory, UserFactory, label_given

Suggestion = namedtuple("Suggestion", "label confidence model_version")
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


def _sample(project, name, split="pool"):
    return Sample.objects.create(project=project, external_id=name, text=f"text {name}",
                                 split=split)


def _label(sample, person, value, at, duration_ms=None):
    label = label_given(sample=sample, annotator=person, value=value, duration_ms=duration_ms)
    Label.objects.filter(pk=label.pk).update(created_at=at)
    return label


@pytest.fixture
def data(db):
    project = ProjectFactory(kind="text", labels=["x", "y"], overlap=2)
    people = {}
    for name in ("alice", "bob", "carol"):
        people[name] = UserFactory(username=name)
        MembershipFactory(project=project, user=people[name], role="annotator")
    scientist = UserFactory(username="sci")
    MembershipFactory(project=project, user=scientist, role="scientist")
    s = {i: _sample(project, f"s{i}", "test" if i == 7 else "pool") for i in range(1, 10)}
    now = timezone.now()
    anchor = (now - 5 * HOUR).replace(minute=0, second=0, microsecond=0)
    a, b, c = people["alice"], people["bob"], people["carol"]
    _label(s[1], a, "x", anchor + 10 * MINUTE, 1000)
    _label(s[2], a, "x", anchor + 20 * MINUTE, 2000)
    _label(s[3], a, "y", anchor + HOUR + 5 * MINUTE, 3000)
    _label(s[4], a, "x", anchor + HOUR + 10 * MINUTE, 4000)
    _label(s[6], a, "y", anchor + 3 * HOUR + MINUTE, None)
    undone = _label(s[8], a, "x", anchor + 3 * HOUR + 2 * MINUTE, 5000)
    Label.objects.filter(pk=undone.pk).update(created_at=timezone.now())  # alice's latest
    label_undo_last(project=project, annotator=a)
    Label.objects.filter(pk=undone.pk).update(created_at=anchor + 3 * HOUR + 2 * MINUTE)
    _label(s[1], b, "x", anchor + 11 * MINUTE, 500)
    _label(s[2], b, "y", anchor + 21 * MINUTE, 700)
    _label(s[3], b, "y", anchor + 30 * MINUTE, 900)
    _label(s[5], b, "x", anchor + 2 * HOUR, 1100)
    _label(s[7], b, "x", anchor + 2 * HOUR + 30 * MINUTE, None)
    _label(s[4], c, "x", anchor + HOUR + 15 * MINUTE)
    _label(s[5], c, "x", anchor + 2 * HOUR + MINUTE)
    _label(s[6], c, "y", anchor + 3 * HOUR + 3 * MINUTE)
    _label(s[7], c, "x", anchor + 2 * HOUR + 31 * MINUTE)
    sample_skip(sample=s[9], annotator=c)
    return project, people, scientist, s


@pytest.fixture
def model_says_x(monkeypatch):
    """A served model (v3) that predicts x for every sample, through annotation's hook."""
    monkeypatch.setitem(hooks._registry, "suggestions", lambda *, project, samples: {
        sample.pk: Suggestion("x", 0.9, 3) for sample in samples})


EXPECTED = {  # person: (labels, active hours, median ms, p90 ms, untimed, skips, superseded)
    "alice": (6, 3, 3000.0, 4600.0, 1, 0, 1),
    "bob": (5, 2, 800.0, 1040.0, 1, 0, 0),
    "carol": (4, 3, None, None, 4, 1, 0),
}


def test_numbers_of_the_constructed_dataset(data, model_says_x):
    project, people, scientist, _s = data
    stats = annotator_stats(project=project, user=scientist)
    rows = {row.username: row for row in stats.rows}
    assert set(rows) == {"alice", "bob", "carol"}  # the idle scientist and owner are not listed
    for name, (labels, hours, median, p90, untimed, skips, superseded) in EXPECTED.items():
        row = rows[name]
        assert (row.labels, row.active_hours, row.median_ms, row.p90_ms, row.untimed, row.skips,
                row.superseded) == (labels, hours, median, p90, untimed, skips, superseded), name
    assert rows["alice"].labels_per_active_hour == 2.0
    assert rows["carol"].labels_per_active_hour == pytest.approx(4 / 3)
    kappas = {(p.first, p.second): (p.shared, p.agreed, p.kappa) for p in stats.pairs}
    assert kappas == {("alice", "bob"): (3, 2, pytest.approx(0.4)),
                      ("alice", "carol"): (2, 2, 1.0),
                      ("bob", "carol"): (2, 2, None)}
    assert stats.fleiss.applicable and (stats.fleiss.items, stats.fleiss.ratings) == (7, 14)
    assert stats.fleiss.kappa == pytest.approx(62 / 90)
    # The model says x: alice x,x,y,x,y -> 3/5; bob x,y,y,x,x -> 3/5 (test s7: 1/1); carol 3/4.
    model = {name: (r.model.compared, r.model.agreed, r.model.test_compared, r.model.test_agreed)
             for name, r in rows.items()}
    assert model == {"alice": (5, 3, 0, 0), "bob": (5, 3, 1, 1), "carol": (4, 3, 1, 1)}
    assert stats.model_version == 3


def test_pairwise_kappa_equals_scikit_learn_on_the_dataset(data):
    project, people, scientist, _s = data
    current = {(label.sample_id, label.annotator.username): label.value
               for label in Label.objects.current().select_related("annotator")}
    stats = annotator_stats(project=project, user=scientist)
    for pair in stats.pairs:
        if pair.kappa is None:
            continue
        shared = sorted(sample for sample, name in current if name == pair.first
                        and (sample, pair.second) in current)
        first = [current[(sample, pair.first)] for sample in shared]
        second = [current[(sample, pair.second)] for sample in shared]
        assert pair.kappa == pytest.approx(cohen_kappa_score(first, second))


def test_model_agreement_predicts_only_the_latest_labels_per_person(data, monkeypatch):
    project, people, scientist, _s = data
    asked = []

    def suggestions(*, project, samples):
        asked.append(len(samples))
        return {sample.pk: Suggestion("x", 0.9, 3) for sample in samples}

    monkeypatch.setitem(hooks._registry, "suggestions", suggestions)
    stats = annotator_stats(project=project, user=scientist, model_sample_limit=2)
    rows = {row.username: row for row in stats.rows}
    assert asked == [4]  # one call: alice s6 s4, bob s7 s5, carol s6 s7 (s6, s7 shared)
    # alice's latest two: s6 (y), s4 (x); bob's: s7 (x), s5 (x); carol's: s6 (y), s7 (x).
    assert (rows["alice"].model.compared, rows["alice"].model.agreed) == (2, 1)
    assert (rows["bob"].model.compared, rows["bob"].model.agreed) == (2, 2)
    assert (rows["carol"].model.compared, rows["carol"].model.agreed) == (2, 1)


def test_without_a_served_model_there_is_no_model_agreement(data):
    project, _people, scientist, _s = data
    stats = annotator_stats(project=project, user=scientist)  # serving's hook: no model yet
    assert stats.model_version is None and all(row.model is None for row in stats.rows)


def test_corrections_count_as_superseded_and_corrected(data):
    project, people, scientist, s = data
    label_correct(sample=s[2], scientist=scientist, value="x")
    rows = {row.username: row for row in annotator_stats(project=project, user=scientist).rows}
    assert (rows["alice"].superseded, rows["alice"].corrected) == (2, 1)  # + her undo
    assert (rows["bob"].superseded, rows["bob"].corrected) == (1, 1)
    assert (rows["sci"].labels, rows["sci"].corrections_made) == (0, 1)
    assert rows["alice"].labels == 6  # work done stays counted
    # An undo long before a correction of the same sample is no correction of alice's.
    sample = _sample(project, "later")
    undone = label_given(sample=sample, annotator=people["alice"], value="y")
    label_undo_last(project=project, annotator=people["alice"])
    Label.objects.filter(pk=undone.pk).update(superseded_at=timezone.now() - HOUR)
    label_given(sample=sample, annotator=people["bob"], value="y")
    label_correct(sample=sample, scientist=scientist, value="x")
    rows = {row.username: row for row in annotator_stats(project=project, user=scientist).rows}
    assert (rows["alice"].superseded, rows["alice"].corrected) == (3, 1)
    assert (rows["bob"].superseded, rows["bob"].corrected) == (2, 2)


@pytest.mark.parametrize("counts", [(1, 2, 3), (10, 11, 25)])
def test_median_and_p90_equal_numpy_linear_percentiles(db, counts):
    project = ProjectFactory(kind="text", labels=["x", "y"])
    rng = np.random.default_rng(sum(counts))
    expected = {}
    for n in counts:
        person = UserFactory()
        MembershipFactory(project=project, user=person)
        durations = [int(d) for d in rng.integers(50, 20_000, size=n)]
        samples = Sample.objects.bulk_create(
            Sample(project=project, text=str(i), external_id=f"{person.pk}-{i}") for i in range(n))
        Label.objects.bulk_create(Label(sample=sample, annotator=person, value="x", duration_ms=d)
                                  for sample, d in zip(samples, durations))
        Label.objects.create(sample=samples[0], annotator=person, value="y", duration_ms=None,
                             superseded_at=timezone.now())  # untimed: left out
        expected[person.username] = [float(q) for q in np.percentile(durations, [50, 90])]
    rows = annotator_stats(project=project, user=project.owner).rows
    assert {row.username: [row.median_ms, row.p90_ms] for row in rows} == {
        name: [pytest.approx(median), pytest.approx(p90)] for name, (median, p90) in expected.items()}


def test_overlap_one_has_no_fleiss_kappa(data):
    project, _people, scientist, _s = data
    project.overlap = 1
    project.save(update_fields=["overlap"])
    stats = annotator_stats(project=project, user=scientist)
    assert not stats.fleiss.applicable and stats.fleiss.kappa is None
    assert len(stats.pairs) == 3  # pairs still count what two people labeled


def test_windows_count_only_their_labels_and_skips(data):
    project, people, scientist, s = data
    now = timezone.now()
    extra = {i: _sample(project, f"old{i}") for i in range(3)}
    _label(extra[0], people["alice"], "x", now - dt.timedelta(days=3) + HOUR, 100)  # 7d, 30d
    _label(extra[1], people["bob"], "y", now - dt.timedelta(days=10), 100)  # in 30d
    _label(extra[2], people["carol"], "y", now - dt.timedelta(days=40), 100)  # all only
    sample_skip(sample=extra[1], annotator=people["alice"])
    Lease.objects.filter(sample=extra[1], annotator=people["alice"]).update(
        created_at=now - dt.timedelta(days=2), expires_at=now - dt.timedelta(days=2))
    expected = {"24h": (6, 5, 4, 0), "7d": (7, 5, 4, 1), "30d": (7, 6, 4, 1), "all": (7, 6, 5, 1)}
    for window, (alice, bob, carol, alice_skips) in expected.items():
        rows = {r.username: r for r in annotator_stats(project=project, user=scientist,
                                                       window=window).rows}
        assert (rows["alice"].labels, rows["bob"].labels, rows["carol"].labels,
                rows["alice"].skips, rows["carol"].skips) == (alice, bob, carol, alice_skips, 1), window
    # Agreement counts a pair only when both labels are in the window: none 2 days ago.
    old = annotator_stats(project=project, user=scientist, window="24h",
                          now=now - dt.timedelta(days=2))
    assert old.pairs == [] and old.fleiss.items == 0
    assert {r.username: r.labels for r in old.rows} == {"alice": 1, "bob": 0, "carol": 0}


def test_query_count_does_not_grow_with_labels(data, model_says_x):
    project, people, scientist, _s = data

    def queries():
        with CaptureQueriesContext(connection) as captured:
            annotator_stats(project=project, user=scientist)
        return len(captured)

    before = queries()
    for i in range(40):
        sample = _sample(project, f"more{i}")
        _label(sample, people["alice"], "xy"[i % 2], timezone.now() - MINUTE, 100 + i)
        _label(sample, people["bob"], "xy"[i % 3 % 2], timezone.now() - MINUTE, 200 + i)
    assert queries() == before
    assert before == 8  # role check, members, labels, times, skips, model, pairs, Fleiss


# --- the page and the API --------------------------------------------------------------

_ROW = re.compile(r'<tr id="annotator-(\d+)">(.*?)</tr>', re.S)
_CELL = re.compile(r'<td data-stat="(\w+)">(.*?)</td>', re.S)


def _page_rows(html: str) -> dict[int, dict[str, str]]:
    return {int(pk): {name: re.sub(r"<[^>]+>", "", value).strip()
                      for name, value in _CELL.findall(body)}
            for pk, body in _ROW.findall(html)}


def _seconds(ms):
    return "—" if ms is None else f"{ms / 1000:.1f} s"


def test_page_and_api_show_the_same_numbers(client, data, model_says_x):
    project, people, scientist, _s = data
    client.force_login(scientist)
    response = client.get(f"/projects/{project.slug}/annotators/")
    assert response.status_code == 200
    html = response.content.decode()
    api = APIClient()
    api.force_login(scientist)
    body = api.get(f"/api/v1/projects/{project.slug}/annotators?window=7d").json()
    assert body["window"] == "7d" and body["model_version"] == 3
    page = _page_rows(html)
    assert set(page) == {row["user_id"] for row in body["annotators"]}
    for row in body["annotators"]:
        cells = page[row["user_id"]]
        labels, hours, median, p90, untimed, skips, superseded = EXPECTED[row["username"]]
        assert (row["labels"], row["active_hours"], row["median_ms"], row["p90_ms"],
                row["untimed_labels"], row["skips"], row["superseded"]) == (
            labels, hours, median, p90, untimed, skips, superseded)
        assert cells["labels"] == str(row["labels"])
        assert cells["active_hours"] == str(row["active_hours"])
        assert cells["labels_per_active_hour"] == f"{row['labels_per_active_hour']:.2f}"
        assert cells["median_ms"] == _seconds(row["median_ms"])
        assert cells["p90_ms"] == _seconds(row["p90_ms"])
        assert cells["untimed_labels"] == str(row["untimed_labels"])
        assert cells["skips"] == str(row["skips"])
        assert cells["superseded"] == str(row["superseded"])
        model = row["model"]
        assert cells["model"] == f"{round(100 * model['share'])}% ({model['agreed']}/{model['compared']})"
    pairs = {(p["first"], p["second"]): p for p in body["pairwise"]}
    assert pairs[("alice", "bob")]["kappa"] == pytest.approx(0.4)
    assert pairs[("bob", "carol")]["kappa"] is None
    for (first, second), pair in pairs.items():
        kappa = "—" if pair["kappa"] is None else f"{pair['kappa']:.2f}"
        cell = re.search(rf'data-pair="{first}\|{second}"><b>([^<]*)</b><span class="n">n (\d+)',
                         html)
        assert cell and cell.groups() == (kappa, str(pair["shared"]))
    assert body["fleiss"] == {"applicable": True, "items": 7, "ratings": 14,
                              "kappa": pytest.approx(62 / 90)}
    assert f'data-stat="fleiss_kappa">{62 / 90:.2f}<' in html
    assert "Active hour" in html and "at least one label" in html  # the definition is named
    assert "latest 200 current labels" in html


def test_page_and_api_access(client, data):
    project, people, scientist, _s = data
    url, api_url = f"/projects/{project.slug}/annotators/", f"/api/v1/projects/{project.slug}/annotators"
    client.force_login(project.owner)
    assert client.get(url).status_code == 200
    client.force_login(people["alice"])
    assert client.get(url).status_code == 403
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    assert client.get("/projects/nope/annotators/").status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login
    api = APIClient()
    assert api.get(api_url).status_code in (401, 403)
    api.force_login(people["alice"])
    refused = api.get(api_url)
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    api.force_login(UserFactory())
    assert api.get(api_url).json()["code"] == "not_found"
    api.force_login(scientist)
    assert api.get(api_url).status_code == 200
    bad = api.get(api_url + "?window=1y")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"
    assert "window" in bad.json()["detail"]


def test_api_with_project_tokens(data, model_says_x):
    project, _people, _scientist, _s = data
    api_url = f"/api/v1/projects/{project.slug}/annotators"

    def with_token(scopes, of=project):
        _token, key = api_token_create(project=of, scopes=scopes)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return api

    answer = with_token(["admin"]).get(api_url + "?window=24h")
    assert answer.status_code == 200 and answer.json()["window"] == "24h"
    assert {row["username"] for row in answer.json()["annotators"]} == {"alice", "bob", "carol"}
    assert with_token(["predict"]).get(api_url).status_code == 403
    assert with_token(["admin"], of=ProjectFactory()).get(api_url).status_code == 404


def test_unknown_window_on_the_page_shows_the_default_with_a_400(client, data):
    project, _people, scientist, _s = data
    client.force_login(scientist)
    response = client.get(f"/projects/{project.slug}/annotators/?window=<b>1y")
    assert response.status_code == 400
    assert b"unknown window" in response.content and b"<b>1y" not in response.content
    assert b'aria-current="page">7 days' in response.content


def test_page_query_count_does_not_grow_with_labels(client, data, model_says_x):
    project, people, scientist, _s = data
    client.force_login(scientist)
    url = f"/projects/{project.slug}/annotators/"

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    queries()  # warm: the session and the user
    before = queries()
    for i in range(30):
        sample = _sample(project, f"more{i}")
        _label(sample, people["carol"], "x", timezone.now() - MINUTE, 100)
        _label(sample, people["bob"], "y", timezone.now() - MINUTE, 100)
    assert queries() == before


def test_project_page_links_to_the_annotators_page(client, data):
    project, _people, scientist, _s = data
    client.force_login(scientist)
    assert f'href="/projects/{project.slug}/annotators/"'.encode() in client.get(
        f"/projects/{project.slug}/").content
