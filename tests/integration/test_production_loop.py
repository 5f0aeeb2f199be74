"""The closed loop on real parts: PostgreSQL, Redis, a Celery worker and Celery beat.

A served model meets a drifted stream through the predict API with feedback; a rule on live
accuracy fires (beat → worker), routes production inputs to the head of the labeling queue,
an annotator labels them through the labeling API, the rule's retrain runs on the worker,
and the new version is served with a higher live accuracy. The rule's record shows each step.
"""
from __future__ import annotations

import random
import time

import pytest
import requests

from annotation.models import Membership, Sample
from annotation.services import personal_token_create
from learning.models import ModelVersion
from learning.services import model_version_request
from serving.models import PredictionLog, RuleFiring
from serving.monitoring_selectors import monitoring_summary
from serving.services import api_token_create
from tests.factories import MembershipFactory, ProjectFactory, UserFactory, label_given

pytestmark = pytest.mark.integration

HTTP = 30
WAIT = 150.0


def truth(x: float, z: float) -> str:
    """Before the shift (z = 0) 'a' is x > 0; after it (z = 1) the boundary moves to x > 1."""
    return "a" if x > (1.0 if z else 0.0) else "b"


def row(rng: random.Random, z: float) -> dict:
    x = rng.uniform(-1.5, 0.5) if not z else rng.uniform(0.0, 2.0)
    return {"x": round(x, 4), "z": z}


def _wait(what: str, check, *processes, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for process in processes:
            if not process.alive():
                pytest.fail(f"a process died while waiting for {what}:\n{process.log()}")
        if time.monotonic() > deadline:
            logs = "\n".join(p.log()[-6000:] for p in processes)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def _served(project) -> ModelVersion | None:
    version = ModelVersion.objects.filter(project=project, is_served=True).first()
    failed = ModelVersion.objects.filter(project=project, status="failed").first()
    if failed is not None:
        pytest.fail(f"v{failed.number} failed: {failed.error}")
    return version


def test_rule_routes_drifted_inputs_to_annotators_and_a_better_model_is_served(
        live_server, celery_workers, celery_beat):
    rng = random.Random(13)
    worker = celery_workers.start()
    owner = UserFactory(email="owner@example.org")
    project = ProjectFactory(kind="tabular", labels=["a", "b"], columns=["x", "z"],
                             batch_size=1000, owner=owner, production_share=1.0,
                             model_spec={"estimator": "random_forest",
                                         "params": {"n_estimators": 50}})
    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    # Before the shift: 60 labeled pool rows and an unlabeled pool; the held-out test split
    # holds both regimes, so a model that learned the shift wins the promotion check.
    for i in range(60):
        values = row(rng, 0)
        sample = Sample.objects.create(project=project, values=values, split="pool")
        label_given(sample=sample, annotator=annotator, value=truth(**values))
    for i in range(40):
        Sample.objects.create(project=project, values=row(rng, 0), split="pool")
    for z in (0, 1, 0, 1) * 10:
        values = row(rng, z)
        sample = Sample.objects.create(project=project, values=values, split="test")
        label_given(sample=sample, annotator=annotator, value=truth(**values))
    model_version_request(project=project)
    v1 = _wait("v1 served", lambda: _served(project), worker)

    base = f"{live_server.url}/api/v1/projects/{project.slug}"
    _token, admin_key = api_token_create(project=project, scopes=["admin"])
    _token, client_key = api_token_create(project=project, scopes=["predict", "feedback"])
    admin = {"Authorization": f"Token {admin_key}"}
    client = {"Authorization": f"Token {client_key}"}
    rule = requests.post(f"{base}/rules", headers=admin, timeout=HTTP, json={
        "metric": "live_accuracy", "op": "<", "threshold": 0.8, "window": "1h",
        "min_count": 20, "cooldown_minutes": 30, "actions": ["retrain", "route", "alert"],
        "route_count": 20, "random_share": 0.25})
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]

    def stream(n: int, feedback: int) -> int:
        """Predict ``n`` drifted rows, send feedback on the first ``feedback``; return the
        version that answered."""
        rows = [row(rng, 1) for _ in range(n)]
        answer = requests.post(f"{base}/predict", headers=client, timeout=HTTP,
                               json={"instances": rows})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        for values, prediction in list(zip(rows, predictions))[:feedback]:
            sent = requests.post(f"{base}/feedback", headers=client, timeout=HTTP,
                                 json={"prediction_id": prediction["id"], "label": truth(**values)})
            assert sent.status_code == 201, sent.text
        return answer.json()["model_version"]

    assert stream(60, feedback=25) == v1.number  # the drifted stream: the old boundary is wrong for x in (0, 1)
    before = monitoring_summary(project=project, window="1h", version=v1.number)["live_accuracy"]
    assert before["n"] == 25 and before["accuracy"] < 0.8

    beat = celery_beat(env={"RULES_EVALUATE_SECONDS": "2"})
    firing = _wait("the rule to fire", lambda: RuleFiring.objects.filter(
        rule_id=rule_id).exclude(sample_ids=[]).first(), worker, beat)
    assert firing.actions == ["route", "retrain", "alert"]
    assert firing.value < 0.8 and firing.count >= 20 and firing.retrain == "waiting"
    routed = set(firing.sample_ids)
    assert len(routed) == 20
    assert set(Sample.objects.filter(pk__in=routed).values_list("origin", flat=True)) == {"production"}

    # An annotator labels through the labeling API: the routed inputs come first.
    _token, personal = personal_token_create(project=project, user=annotator)
    me = {"Authorization": f"Token {personal}"}
    handed = []
    for _ in range(len(routed)):
        sample = requests.get(f"{base}/next", headers=me, timeout=HTTP).json()["sample"]
        handed.append(sample["id"])
        assert sample["origin"] == "production", (handed, sample)
        label = requests.post(f"{base}/labels", headers=me, timeout=HTTP,
                              json={"sample": sample["id"], "value": truth(**sample["values"])})
        assert label.status_code == 201, label.text
    assert set(handed) == routed

    # Beat's next evaluations: the labels become feedback, the waiting retrain is requested,
    # the worker trains it and the promotion check serves it.
    def promoted():
        firing.refresh_from_db()
        return firing.version_id and firing.version.status == "ready" and firing.version.is_served
    _wait("the rule's retrain to be served", promoted, worker, beat)
    v2 = firing.version
    assert v2.number > v1.number and v2.trigger == ModelVersion.Trigger.RULE
    assert PredictionLog.objects.filter(sample_id__in=routed, feedback_at__isnull=False).count() == 20
    # the 5 routed inputs drawn at random count as v1's live accuracy, with its clients'
    # feedback; the 15 most informative are counted apart
    v1_now = monitoring_summary(project=project, window="1h", version=v1.number)
    assert v1_now["live_accuracy"]["n"] == 30 and v1_now["live_accuracy"]["sampled"] == 5
    assert v1_now["routed_accuracy"]["n"] == 15
    assert PredictionLog.objects.filter(sample_id__in=routed, sampled=True).count() == 5
    # the drawn five are held out: test samples the promotion check read, never trained on
    drawn = PredictionLog.objects.filter(sample_id__in=routed, sampled=True).values("sample_id")
    assert set(Sample.objects.filter(pk__in=drawn).values_list("split", flat=True)) == {"test"}
    _wait("the worker to rescore the pool", lambda: ModelVersion.objects.get(
        pk=v2.pk).scored_sample_count is not None, worker, beat)

    time.sleep(1.5)  # the served version is re-checked within SERVING_MODEL_CHECK_SECONDS
    assert stream(40, feedback=40) == v2.number
    after = monitoring_summary(project=project, window="1h", version=v2.number)["live_accuracy"]
    assert after["n"] == 40 and after["accuracy"] > before["accuracy"], (before, after)
    print(f"live accuracy on the drifted stream: v{v1.number} {before['accuracy']} "
          f"(n={before['n']}), v{v2.number} {after['accuracy']} (n={after['n']})")

    shown = requests.get(f"{base}/rules/{rule_id}/firings", headers=admin, timeout=HTTP).json()
    first = shown[-1]
    assert first["id"] == firing.pk and first["version"] == v2.number
    assert first["version_served"] is True and set(first["sample_ids"]) == routed
    assert first["actions"] == ["route", "retrain", "alert"] and first["count"] >= 20
    assert any("routed 20" in note and "5 drawn at random" in note for note in first["notes"])
    assert any(f"v{v2.number}" in note for note in first["notes"])
