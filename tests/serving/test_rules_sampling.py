"""A rule's random share: inputs drawn uniformly at random from the served version's
predictions, whose labels count as live accuracy (the informative picks' do not)."""
import datetime as dt

import pytest
from django.utils import timezone

from annotation.models import Sample
from serving.models import PredictionLog, RuleFiring
from serving.monitoring_selectors import monitoring_summary
from serving.rules.evaluation import rule_evaluate, rules_evaluate
from serving.rules.routing import random_picks, route_inputs
from serving.rules.services import rule_create
from tests.factories import label_given
from tests.serving.test_rules import RULE, _feedback, _stream

pytestmark = pytest.mark.django_db


def _label_all(project, sample_ids, annotator, *, right):
    for sample in Sample.objects.filter(pk__in=sample_ids):
        predicted = sample.prediction["label"]
        value = predicted if right else next(x for x in project.labels if x != predicted)
        label_given(sample=sample, annotator=annotator, value=value)


@pytest.mark.parametrize("k, share, picks", [
    (20, 0.2, 4), (20, 0.0, 0), (3, 0.1, 1), (5, 1.0, 5), (0, 0.5, 0), (7, 0.5, 4)])
def test_random_picks(k, share, picks):
    assert random_picks(k, share) == picks


def test_drawn_labels_count_as_live_accuracy_the_informative_apart(
        served_project, token_client, annotator):
    _stream(served_project, token_client, 10)
    routed = route_inputs(project=served_project, k=4, window="1h", now=timezone.now(),
                          random_share=0.5)
    assert len(routed.sample_ids) == 4
    assert "2 drawn at random" in routed.notes[0]
    assert any(n.startswith("drew 2 of 10 prediction(s)") for n in routed.notes)
    logs = PredictionLog.objects.filter(sample_id__in=routed.sample_ids)
    assert sorted(log.sampled for log in logs) == [False, False, True, True]
    # the drawn ones are held out (test split), the informative ones go to the pool
    assert sorted((log.sampled, log.sample.split) for log in logs) == [
        (False, "pool"), (False, "pool"), (True, "test"), (True, "test")]
    _label_all(served_project, routed.sample_ids, annotator, right=False)
    rules_evaluate(now=timezone.now())
    sources = {log.pk: log.feedback_source for log in logs.all()}
    assert sorted(sources.values()) == ["routed", "routed", "sampled", "sampled"]
    assert all((src == "sampled") == log.sampled for log in logs for src in [sources[log.pk]])
    summary = monitoring_summary(project=served_project, window="1h", now=timezone.now())
    live, apart = summary["live_accuracy"], summary["routed_accuracy"]
    assert (live["n"], live["correct"], live["sampled"]) == (2, 0, 2)
    assert (apart["n"], apart["correct"]) == (2, 0)


def test_the_draw_includes_inputs_routed_already_and_leaves_out_client_feedback(
        served_project, token_client, annotator):
    predictor, predictions = _stream(served_project, token_client, 8)
    _feedback(predictor, served_project, predictions[:2], wrong=False)
    first = route_inputs(project=served_project, k=6, window="1h", now=timezone.now())
    assert len(first.sample_ids) == 6  # every prediction without feedback, as informative
    _label_all(served_project, first.sample_ids, annotator, right=True)
    rules_evaluate(now=timezone.now())
    assert set(PredictionLog.objects.filter(sample_id__in=first.sample_ids)
               .values_list("feedback_source", flat=True)) == {"routed"}
    again = route_inputs(project=served_project, k=3, window="1h", now=timezone.now(),
                         random_share=1.0)
    # nothing fresh to route: the three drawn are routed ones, marked and now live accuracy
    assert again.sample_ids == []
    assert any("drew 3 of 6 prediction(s)" in n and "(3 routed already)" in n
               for n in again.notes)
    drawn = PredictionLog.objects.filter(sampled=True)
    assert drawn.count() == 3 and set(drawn.values_list("feedback_source", flat=True)) == {
        "sampled"}
    summary = monitoring_summary(project=served_project, window="1h", now=timezone.now())
    assert (summary["live_accuracy"]["n"], summary["live_accuracy"]["sampled"]) == (5, 3)
    assert summary["routed_accuracy"]["n"] == 3
    # drawn once only: three left to draw, then none
    route_inputs(project=served_project, k=5, window="1h", now=timezone.now(), random_share=1.0)
    assert PredictionLog.objects.filter(sampled=True).count() == 6
    last = route_inputs(project=served_project, k=5, window="1h", now=timezone.now(),
                        random_share=1.0)
    assert any("nothing drawn at random" in n for n in last.notes)


def test_a_live_accuracy_rule_reads_the_drawn_labels_and_fires(
        served_project, token_client, annotator):
    rule = rule_create(project=served_project, data={**RULE, "actions": ["route"],
                                                     "route_count": 6, "random_share": 0.5})
    _stream(served_project, token_client, 12)
    now = timezone.now()
    assert rule_evaluate(rule_id=rule.pk, now=now).startswith("no data")
    routed = route_inputs(project=served_project, k=6, window="1h", now=now,
                          random_share=rule.random_share)
    _label_all(served_project, routed.sample_ids, annotator, right=False)
    assert rules_evaluate(now=now + dt.timedelta(minutes=1))[rule.pk] == "fired"
    rule.refresh_from_db()
    assert rule.last_value == 0.0 and rule.last_count == 3
    firing = RuleFiring.objects.get(rule=rule)
    # the draw is among the 9 not drawn yet, the 3 routed before included
    assert len(firing.sample_ids) == 6 and any("drew 3 of 9 prediction(s)" in n
                                               for n in firing.notes)


def test_rules_api_takes_and_returns_the_random_share(served_project, token_client):
    admin = token_client(served_project, scopes=("admin",))
    url = f"/api/v1/projects/{served_project.slug}/rules"
    made = admin.post(url, {**RULE, "random_share": 0.2}, format="json")
    assert made.status_code == 201 and made.json()["random_share"] == 0.2
    bad = admin.patch(f"{url}/{made.json()['id']}", {"random_share": 2}, format="json")
    assert bad.status_code == 400 and "random_share" in bad.json()["detail"]


def test_drawn_inputs_are_held_out_first_in_the_test_queue_and_never_trained_on(
        served_project, token_client, annotator, make_samples):
    from annotation.selectors import labeled_samples
    from annotation.services import sample_lease_next

    make_samples(0, 3)  # unlabeled imported test samples, in the queue before any draw
    _stream(served_project, token_client, 10)
    routed = route_inputs(project=served_project, k=5, window="1h", now=timezone.now(),
                          random_share=0.4)
    drawn = set(PredictionLog.objects.filter(sampled=True).values_list("sample_id", flat=True))
    assert len(drawn) == 2 and drawn <= set(routed.sample_ids)
    assert set(Sample.objects.filter(pk__in=drawn).values_list("split", "origin")) == {
        ("test", "production")}
    assert all(Sample.objects.get(pk=pk).random_key < 0 for pk in drawn)
    # the labeled test split is over its share (9 of 39 > 0.2), yet the next hand-outs are
    # the drawn ones, before the imported test samples and the routed pool ones; then the
    # pool again
    assert served_project.test_fraction < 9 / 39
    handed = []
    for _ in range(3):
        handed.append(sample_lease_next(project=served_project, annotator=annotator))
        label_given(sample=handed[-1], annotator=annotator, value=served_project.labels[0])
    assert {s.pk for s in handed[:2]} == drawn and handed[2].split == "pool"
    test_ids = {s.pk for s, _v, _id in labeled_samples(project=served_project, split="test")}
    assert drawn <= test_ids
    # training reads the pool's labels (learning.services.training)
    assert not drawn & {s.pk for s, _v, _id in labeled_samples(project=served_project,
                                                                split="pool")}
