"""KPI rules: validation, the API, evaluation, cool-down, broken rules, routing, alerts."""
import base64
import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Sample
from learning.models import ModelVersion
from serving.models import PredictionLog, Rule, RuleFiring
from serving.rules import evaluation, metrics
from serving.rules.evaluation import rule_evaluate, rules_evaluate
from serving.rules.services import rule_create, rule_update
from serving.rules.validation import InvalidRule, rule_check
from tests.factories import label_given, png_bytes

pytestmark = pytest.mark.django_db

RULE = {"metric": "live_accuracy", "op": "<", "threshold": 0.8, "window": "1h",
        "min_count": 3, "cooldown_minutes": 30, "actions": ["retrain", "route", "alert"],
        "route_count": 4}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def admin(served_project, token_client):
    return token_client(served_project, scopes=("admin",))


def _stream(project, token_client, n=8, *, wrong=True):
    """Predict ``n`` distinct images and send feedback on all (wrong labels when ``wrong``)."""
    predictor = token_client(project, scopes=("predict", "feedback"))
    instances = [{"image_base64": _b64(png_bytes(i % 3, seed=100 + i))} for i in range(n)]
    predictions = predictor.post(f"/api/v1/projects/{project.slug}/predict",
                                 {"instances": instances}, format="json").json()["predictions"]
    return predictor, predictions


def _feedback(predictor, project, predictions, *, wrong=True):
    for p in predictions:
        label = p["label"]
        if wrong:
            label = next(x for x in project.labels if x != p["label"])
        r = predictor.post(f"/api/v1/projects/{project.slug}/feedback",
                           {"prediction_id": p["id"], "label": label}, format="json")
        assert r.status_code == 201, r.content


@pytest.mark.parametrize("change, field", [
    ({"metric": "accuracy"}, "metric"), ({"op": "=="}, "op"), ({"threshold": "x"}, "threshold"),
    ({"threshold": 1.5}, "threshold"), ({"window": "2h"}, "window"),
    ({"min_count": -1}, "min_count"), ({"cooldown_minutes": 0}, "cooldown_minutes"),
    ({"actions": []}, "actions"), ({"actions": ["retrain", "retrain"]}, "actions"),
    ({"actions": ["deploy"]}, "actions"), ({"route_count": 0}, "route_count"),
    ({"column": "x"}, "column"), ({"force": True}, "force"), ({"enabled": "yes"}, "enabled"),
    ({"random_share": 1.5}, "random_share"), ({"random_share": "x"}, "random_share"),
    ({"random_share": True}, "random_share"), ({"random_share": -0.1}, "random_share"),
])
def test_invalid_rules_name_the_field(change, field):
    with pytest.raises(InvalidRule) as caught:
        rule_check({**RULE, **change})
    assert caught.value.field == field and field in caught.value.message


def test_required_fields_and_defaults():
    with pytest.raises(InvalidRule) as caught:
        rule_check({k: v for k, v in RULE.items() if k != "threshold"})
    assert caught.value.field == "threshold"
    checked = rule_check({"metric": "drift", "column": "pixel_3", "op": ">", "threshold": 0.2,
                          "actions": ["alert"]})
    assert checked["window"] == "1h" and checked["cooldown_minutes"] == 60
    assert checked["random_share"] == 0.2 and rule_check({**RULE, "random_share": 1})[
        "random_share"] == 1.0
    assert rule_check(RULE)["actions"] == ["route", "retrain", "alert"]  # route first


def test_api_create_list_patch_delete_and_400s(served_project, admin):
    base = f"/api/v1/projects/{served_project.slug}/rules"
    created = admin.post(base, RULE, format="json")
    assert created.status_code == 201, created.content
    rule_id = created.json()["id"]
    assert [r["id"] for r in admin.get(base).json()] == [rule_id]
    bad = admin.post(base, {**RULE, "metric": "nope"}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"
    assert "metric" in bad.json()["detail"]
    bad = admin.patch(f"{base}/{rule_id}", {"threshold": -3}, format="json")
    assert bad.status_code == 400 and "threshold" in bad.json()["detail"]
    patched = admin.patch(f"{base}/{rule_id}", {"threshold": 0.7}, format="json")
    assert patched.status_code == 200 and patched.json()["threshold"] == 0.7
    assert admin.get(f"{base}/{rule_id}/firings").json() == []
    assert admin.get(f"{base}/999999").status_code == 404
    deleted = admin.delete(f"{base}/{rule_id}")
    assert deleted.status_code == 200 and deleted.json() == {"id": rule_id, "deleted": True}
    assert not Rule.objects.exists()


def test_api_needs_admin_scope_or_a_science_role(served_project, token_client, annotator):
    base = f"/api/v1/projects/{served_project.slug}/rules"
    predictor = token_client(served_project, scopes=("predict",))
    assert predictor.get(base).status_code == 403
    person = APIClient()
    person.force_authenticate(annotator)
    assert person.get(base).status_code == 403
    person.force_authenticate(served_project.owner)
    assert person.get(base).status_code == 200


def test_rule_fires_routes_alerts_and_retrains_after_the_labels(
        served_project, token_client, annotator, django_capture_on_commit_callbacks):
    served_project.owner.email = "owner@example.org"
    served_project.owner.save()
    rule = rule_create(project=served_project, data=RULE)
    predictor, predictions = _stream(served_project, token_client, 6)
    _feedback(predictor, served_project, predictions[:3])  # 3 wrong: accuracy 0
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert rules_evaluate(now=now)[rule.pk] == "fired"
    firing = RuleFiring.objects.get()
    assert firing.value == 0.0 and firing.count == 3
    assert firing.actions == ["route", "retrain", "alert"]
    # the 3 predictions without feedback were routed, with the prediction made
    routed = list(Sample.objects.filter(pk__in=firing.sample_ids))
    assert len(routed) == 3 and {s.origin for s in routed} == {"production"}
    assert all(s.status == "unlabeled" and s.prediction["version"] == 1 for s in routed)
    assert PredictionLog.objects.filter(sample_id__in=firing.sample_ids).count() == 3
    assert firing.retrain == "waiting" and firing.version is None
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["owner@example.org"]
    # the cool-down holds: a second evaluation does not fire
    assert "cooling down" in rule_evaluate(rule_id=rule.pk, now=now + dt.timedelta(minutes=5))
    # the routed samples come first in the queue, then are labeled
    from annotation.services import sample_lease_next
    first = sample_lease_next(project=served_project, annotator=annotator)
    assert first.pk in firing.sample_ids
    for sample in routed:
        label_given(sample=sample, annotator=annotator, value=sample.prediction["label"])
    rules_evaluate(now=now + dt.timedelta(minutes=6))
    firing.refresh_from_db()
    assert firing.retrain == "requested" and firing.version is not None
    assert firing.version.trigger == ModelVersion.Trigger.RULE
    # the annotators' labels became feedback on the routed predictions
    logs = PredictionLog.objects.filter(sample_id__in=firing.sample_ids)
    assert all(log.feedback_at is not None and log.true_label for log in logs)
    api = token_client(served_project, scopes=("admin",))
    [shown] = api.get(f"/api/v1/projects/{served_project.slug}/rules/{rule.pk}/firings").json()
    assert shown["version"] == firing.version.number and shown["sample_ids"] == firing.sample_ids


def test_alert_resolves_when_the_condition_no_longer_holds(served_project, token_client):
    rule = rule_create(project=served_project, data={**RULE, "actions": ["alert"]})
    predictor, predictions = _stream(served_project, token_client, 6)
    _feedback(predictor, served_project, predictions[:3])
    now = timezone.now()
    assert rule_evaluate(rule_id=rule.pk, now=now) == "fired"
    assert RuleFiring.objects.get().alert_resolved_at is None
    _feedback(predictor, served_project, predictions[3:], wrong=False)
    rule_update(rule=rule, data={"threshold": 0.4})
    assert rule_evaluate(rule_id=rule.pk, now=now + dt.timedelta(minutes=1)) == "not met"
    assert RuleFiring.objects.get().alert_resolved_at is not None


def test_too_few_and_no_data_do_not_fire(served_project):
    rule = rule_create(project=served_project, data=RULE)
    status = rule_evaluate(rule_id=rule.pk, now=timezone.now())
    assert status.startswith("no data") and not RuleFiring.objects.exists()
    rule.refresh_from_db()
    assert rule.enabled and rule.last_status.startswith("no data")


def test_drift_reads_share_or_a_column_and_no_data_when_none(served_project, monkeypatch):
    share = rule_create(project=served_project, data={"metric": "drift", "op": ">",
                                                      "threshold": 0.3, "actions": ["alert"]})
    column = rule_create(project=served_project, data={"metric": "drift", "column": "age",
                                                       "op": ">", "threshold": 0.5,
                                                       "actions": ["alert"]})
    now = timezone.now()
    assert rule_evaluate(rule_id=share.pk, now=now).startswith("no data")  # drift is None
    drift = {"drifted": True, "share": 0.4, "n": 200, "reference_n": 500, "method": "psi",
             "features": [{"name": "age", "method": "psi", "score": 0.2, "threshold": 0.1,
                           "drifted": True}]}
    real = metrics.monitoring_summary
    monkeypatch.setattr(metrics, "monitoring_summary",
                        lambda **kw: {**real(**kw), "drift": drift})
    assert rule_evaluate(rule_id=share.pk, now=now) == "fired"
    assert rule_evaluate(rule_id=column.pk, now=now) == "not met"  # 0.2 < 0.5
    column.refresh_from_db()
    assert column.last_value == 0.2 and column.last_count == 200
    rule_update(rule=column, data={"column": "height"})
    assert rule_evaluate(rule_id=column.pk, now=now) == "broken"
    column.refresh_from_db()
    assert not column.enabled and "height" in column.broken_reason


def test_a_broken_rule_is_disabled_until_edited_and_others_go_on(served_project, monkeypatch):
    good = rule_create(project=served_project, data={"metric": "labels_since_model", "op": ">=",
                                                     "threshold": 0, "actions": ["alert"]})
    bad = rule_create(project=served_project, data={**RULE, "metric": "error_rate"})
    Rule.objects.filter(pk=good.pk).update(metric="no_such_metric")
    real = metrics.metric_read

    def failing(rule, now):
        if rule.metric == "error_rate":
            raise ZeroDivisionError("division by zero")
        return real(rule, now)

    monkeypatch.setattr(evaluation, "metric_read", failing)
    statuses = rules_evaluate(now=timezone.now())
    assert statuses == {good.pk: "broken", bad.pk: "broken"}
    good.refresh_from_db()
    bad.refresh_from_db()
    assert "no_such_metric" in good.broken_reason and "division" in bad.broken_reason
    assert rules_evaluate(now=timezone.now()) == {}  # off until edited
    rule_update(rule=bad, data={"threshold": 0.5})
    bad.refresh_from_db()
    assert bad.enabled and bad.broken_reason == ""


def test_labels_since_model_and_model_age(served_project, annotator, make_samples):
    since = rule_create(project=served_project, data={"metric": "labels_since_model", "op": ">=",
                                                      "threshold": 2, "actions": ["retrain"]})
    age = rule_create(project=served_project, data={"metric": "model_age_hours", "op": ">",
                                                    "threshold": 1, "actions": ["alert"]})
    now = timezone.now()
    assert rule_evaluate(rule_id=since.pk, now=now) == "not met"
    for sample in make_samples(2):
        label_given(sample=sample, annotator=annotator, value="0")
    assert rule_evaluate(rule_id=since.pk, now=now) == "fired"
    firing = RuleFiring.objects.get(rule=since)
    assert firing.version is not None and firing.retrain == "requested"
    assert rule_evaluate(rule_id=age.pk, now=now) == "not met"
    assert rule_evaluate(rule_id=age.pk, now=now + dt.timedelta(hours=2)) == "fired"


@pytest.mark.parametrize("trigger, promoted", [("batch", True), ("rule", False)])
def test_rule_retrain_never_unserves_a_better_model(served_project, monkeypatch, trigger,
                                                    promoted):
    """Under the 'latest' policy a batch retrain is served whatever its score; one a rule
    asked for only when the test labels do not show it worse than the served model."""
    from learning.services import model_version_request, model_version_train, promotion
    served_project.promotion = "latest"
    served_project.save()
    served = ModelVersion.objects.get(is_served=True)
    from learning.promotion_check import Verdict
    worse = promotion._Comparison(new_f1=0.5, served_f1=1.0,
                                  verdict=Verdict(rows=10, mean=-0.5, z=-5.0))
    monkeypatch.setattr(promotion, "_compare_on_current_test", lambda p, v, s: worse)
    version = model_version_request(project=served_project, trigger=trigger)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    assert version.status == "ready" and version.trigger == trigger
    assert ModelVersion.objects.get(is_served=True).pk == (version.pk if promoted else served.pk)


def test_one_queued_retrain_under_many_firings(served_project):
    rules = [rule_create(project=served_project, data={"metric": "labels_since_model",
                                                       "op": ">=", "threshold": 0,
                                                       "actions": ["retrain"]})
             for _ in range(3)]
    evaluation_now = timezone.now()
    statuses = rules_evaluate(now=evaluation_now)
    assert set(statuses.values()) == {"fired"} and len(statuses) == len(rules)
    # the send waits for a commit that never comes here: the versions stay queued
    assert ModelVersion.objects.filter(status="queued").count() == 1
    assert len({f.version_id for f in RuleFiring.objects.all()}) == 1


def test_routing_skips_unkept_and_duplicate_inputs(served_project, token_client, settings):
    predictor = token_client(served_project, scopes=("predict",))
    same = {"image_base64": _b64(png_bytes(1, seed=7))}
    predictor.post(f"/api/v1/projects/{served_project.slug}/predict",
                   {"instances": [same, same]}, format="json")
    settings.PREDICTION_LOG_INSTANCE_MAX_BYTES = 1
    predictor.post(f"/api/v1/projects/{served_project.slug}/predict",
                   {"instances": [{"image_base64": _b64(png_bytes(2, seed=9))}]}, format="json")
    from serving.rules.routing import route_inputs
    routed = route_inputs(project=served_project, k=5, window="1h", now=timezone.now())
    assert len(routed.sample_ids) == 1
    assert any("not kept" in note for note in routed.notes)
    assert any("duplicate" in note for note in routed.notes)


def test_routed_scores_take_the_production_share(served_project, make_samples):
    from annotation.services.production import routed_scores
    for i, sample in enumerate(make_samples(10)):
        Sample.objects.filter(pk=sample.pk).update(score=1.0 - i / 10)
    served_project.production_share = 0.5
    scores = routed_scores(project=served_project, count=4)
    pool = sorted(Sample.objects.filter(project=served_project, split="pool",
                                        status="unlabeled").values_list("score", flat=True),
                  reverse=True)
    merged = sorted([(s, "r") for s in scores] + [(s, "p") for s in pool], reverse=True)
    assert [kind for _s, kind in merged[:8]] == ["r", "p", "r", "p", "r", "p", "r", "p"]
    served_project.production_share = 1.0
    assert min(routed_scores(project=served_project, count=4)) > max(pool)


@pytest.mark.django_db(transaction=True)
def test_cooldown_holds_under_concurrent_evaluations(project, annotator, make_samples):
    """Eight evaluations of one rule at once fire it once (row lock + compare-and-set)."""
    import threading

    from django.db import connection
    rule = rule_create(project=project, data={"metric": "labels_since_model", "op": ">=",
                                              "threshold": 0, "actions": ["alert"]})
    now = timezone.now()
    statuses, barrier = [], threading.Barrier(8)

    def run():
        try:
            barrier.wait()
            statuses.append(rule_evaluate(rule_id=rule.pk, now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count("fired") == 1 and len(statuses) == 8
    assert RuleFiring.objects.filter(rule=rule).count() == 1
