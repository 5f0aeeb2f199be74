"""The closed loop's honesty: live accuracy from client feedback only (routed inputs' labels
apart), rules without data, routed images compared with the project's samples by content."""
import datetime as dt

import pytest
from django.utils import timezone

from annotation.images import content_sha256
from annotation.models import Sample
from serving.models import PredictionLog, Rule, RuleFiring
from serving.monitoring_selectors import monitoring_summary
from serving.rules.evaluation import rule_evaluate, rules_evaluate
from serving.rules.routing import route_inputs
from serving.rules.services import rule_create, rule_update
from tests.annotation.test_import_samples import run, zip_of
from tests.factories import label_given, png_bytes
from tests.serving.test_rules import RULE, _b64, _feedback, _stream

pytestmark = pytest.mark.django_db


def _wrong(project, label):
    return next(x for x in project.labels if x != label)


def test_live_accuracy_counts_client_feedback_and_routed_labels_apart(
        served_project, token_client, annotator):
    predictor, predictions = _stream(served_project, token_client, 8)
    _feedback(predictor, served_project, predictions[:4], wrong=False)  # clients: all right
    routed = route_inputs(project=served_project, k=4, window="1h", now=timezone.now())
    assert len(routed.sample_ids) == 4
    for sample in Sample.objects.filter(pk__in=routed.sample_ids):  # annotators: all wrong
        label_given(sample=sample, annotator=annotator,
                    value=_wrong(served_project, sample.prediction["label"]))
    rules_evaluate(now=timezone.now())  # turns the routed labels into feedback
    logs = PredictionLog.objects.filter(sample_id__in=routed.sample_ids)
    assert {log.feedback_source for log in logs} == {"routed"}
    summary = monitoring_summary(project=served_project, window="1h", now=timezone.now())
    live, apart = summary["live_accuracy"], summary["routed_accuracy"]
    assert (live["n"], live["correct"], live["accuracy"]) == (4, 4, 1.0)
    assert (apart["n"], apart["correct"], apart["accuracy"]) == (4, 0, 0.0)
    # a client's feedback on a routed prediction is client feedback from then on
    routed_log = logs.first()
    pid = str(routed_log.prediction_id)
    sent = next(p for p in predictions if p["id"] == pid)
    predictor.post(f"/api/v1/projects/{served_project.slug}/feedback",
                   {"prediction_id": pid, "label": sent["label"]}, format="json")
    routed_log.refresh_from_db()
    assert routed_log.feedback_source == "client"
    summary = monitoring_summary(project=served_project, window="1h", now=timezone.now())
    assert (summary["live_accuracy"]["n"], summary["live_accuracy"]["correct"]) == (5, 5)
    assert summary["routed_accuracy"]["n"] == 3


def test_routed_labels_do_not_fire_a_live_accuracy_rule(served_project, token_client, annotator):
    rule = rule_create(project=served_project, data={**RULE, "actions": ["route"],
                                                     "route_count": 6})
    predictor, predictions = _stream(served_project, token_client, 9)
    _feedback(predictor, served_project, predictions[:3], wrong=False)
    now = timezone.now()
    assert rule_evaluate(rule_id=rule.pk, now=now) == "not met"
    routed = route_inputs(project=served_project, k=6, window="1h", now=now)
    for sample in Sample.objects.filter(pk__in=routed.sample_ids):
        label_given(sample=sample, annotator=annotator,
                    value=_wrong(served_project, sample.prediction["label"]))
    statuses = rules_evaluate(now=now + dt.timedelta(minutes=1))
    assert statuses[rule.pk] == "not met" and not RuleFiring.objects.exists()
    rule.refresh_from_db()
    assert rule.last_value == 1.0 and rule.last_count == 3


def test_monitoring_page_and_json_show_routed_accuracy_apart(served_project, token_client):
    api = token_client(served_project, scopes=("monitor",))
    data = api.get(f"/api/v1/projects/{served_project.slug}/monitoring").json()
    assert data["routed_accuracy"]["n"] == 0 and "least certain" in data["routed_accuracy"]["note"]
    from django.test import Client
    browser = Client()
    browser.force_login(served_project.owner)
    page = browser.get(f"/projects/{served_project.slug}/monitoring/").content.decode()
    assert "Live accuracy (client feedback, random draws)" in page
    assert "Accuracy on routed inputs" in page


def test_no_data_fires_nothing_closes_alerts_and_turns_the_rule_off_after_a_while(
        served_project, token_client, settings):
    settings.RULES_NO_DATA_HOURS = 2
    rule = rule_create(project=served_project, data={**RULE, "actions": ["alert"]})
    predictor, predictions = _stream(served_project, token_client, 4)
    _feedback(predictor, served_project, predictions[:3])
    now = timezone.now()
    assert rule_evaluate(rule_id=rule.pk, now=now) == "fired"
    # an hour later the window holds no feedback: the open alert closes, the rule waits
    later = now + dt.timedelta(hours=1, minutes=5)
    assert rule_evaluate(rule_id=rule.pk, now=later).startswith("no data")
    assert RuleFiring.objects.get().alert_resolved_at == later
    rule.refresh_from_db()
    assert rule.enabled and rule.no_data_since == later and rule.last_value is None
    # still no data RULES_NO_DATA_HOURS after the first reading without data: off, with why
    assert rule_evaluate(rule_id=rule.pk, now=later + dt.timedelta(hours=1)).startswith("no data")
    assert rule_evaluate(rule_id=rule.pk, now=later + dt.timedelta(hours=2)) == "broken"
    rule.refresh_from_db()
    assert not rule.enabled and "no data" in rule.broken_reason and "2 h" in rule.broken_reason
    assert rules_evaluate(now=later + dt.timedelta(hours=3)).get(rule.pk) is None  # stays off
    # an edit switches it back on, with a new wait for data
    rule = rule_update(rule=rule, data={"threshold": 0.7})
    assert rule.enabled and rule.no_data_since is None and not rule.broken_reason


def test_a_new_rule_waits_for_data_from_its_creation(served_project, settings):
    settings.RULES_NO_DATA_HOURS = 24
    rule = rule_create(project=served_project, data=RULE)
    created = max(rule.created_at, rule.updated_at)  # made or last edited
    assert rule_evaluate(rule_id=rule.pk, now=created + dt.timedelta(hours=23)).startswith("no data")
    rule.refresh_from_db()
    assert rule.enabled and rule.no_data_since == created
    assert rule_evaluate(rule_id=rule.pk, now=created + dt.timedelta(hours=24)) == "broken"


def test_data_again_ends_the_wait(served_project, token_client, settings):
    settings.RULES_NO_DATA_HOURS = 1
    rule = rule_create(project=served_project, data={**RULE, "min_count": 1})
    rule_evaluate(rule_id=rule.pk, now=timezone.now())
    rule.refresh_from_db()
    assert rule.no_data_since is not None
    predictor, predictions = _stream(served_project, token_client, 2)
    _feedback(predictor, served_project, predictions[:1], wrong=False)
    assert rule_evaluate(rule_id=rule.pk, now=timezone.now()) == "not met"
    rule.refresh_from_db()
    assert rule.no_data_since is None and rule.enabled


def test_routed_images_are_never_copies_of_the_projects_samples(served_project, token_client):
    same = png_bytes(1, seed=4242)
    job = run(served_project, "more.zip", zip_of({"1/dup.png": same}))
    assert job.status == "done", job.error
    imported = Sample.objects.get(project=served_project, import_job=job)
    assert imported.content_sha256 == content_sha256(same)
    # a copy of a routed input too: it becomes a production sample with the hash
    routed_before = png_bytes(2, seed=4343)
    predictor = token_client(served_project, scopes=("predict",))
    url = f"/api/v1/projects/{served_project.slug}/predict"
    predictor.post(url, {"instances": [{"image_base64": _b64(routed_before)}]}, format="json")
    first = route_inputs(project=served_project, k=5, window="1h", now=timezone.now())
    [made] = Sample.objects.filter(pk__in=first.sample_ids)
    assert made.content_sha256 == content_sha256(routed_before)
    fresh = png_bytes(0, seed=4444)
    predictor.post(url, {"instances": [{"image_base64": _b64(b)} for b in
                                       (same, routed_before, fresh)]}, format="json")
    routed = route_inputs(project=served_project, k=5, window="1h", now=timezone.now())
    assert [s.content_sha256 for s in Sample.objects.filter(pk__in=routed.sample_ids)] == [
        content_sha256(fresh)]
    assert any("2 duplicate" in note for note in routed.notes)


def test_routing_spreads_its_picks_over_predicted_classes():
    import numpy as np

    from serving.rules.routing import spread_over_classes
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    predicted = ["a", "a", "a", "b", "b", "c"]
    # the most uncertain of each class in turn, classes by their best score
    assert spread_over_classes(scores, predicted, 4) == [0, 3, 5, 1]
    assert spread_over_classes(scores, predicted, 10) == [0, 3, 5, 1, 4, 2]
