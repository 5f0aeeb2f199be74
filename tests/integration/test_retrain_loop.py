"""The active-learning loop on real parts: HTTP labeling -> Redis -> Celery worker -> API.

Labels are submitted through the labeling page of a live server; each full batch queues a
retrain whose message goes through Redis to a separate ``celery worker`` process, which
trains on PostgreSQL data and promotes the model; the predict API then answers with it.
"""
from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest
import requests

from annotation.models import Label, Membership, Sample
from learning.models import ModelVersion
from learning.tasks import model_version_train_task
from serving.models import PredictionLog
from serving.services import api_token_create
from tests.factories import (
    ImageSampleFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    png_bytes,
)

pytestmark = pytest.mark.integration

N_POOL = 60
N_TEST = 20
BATCHES = 2
TRAIN_TIMEOUT = 90.0
HTTP_TIMEOUT = 30

SAMPLE_CARD = re.compile(r'<section id="sample-card"[^>]*\bdata-sample="(\d*)"')


def _card_sample_id(html: str) -> int:
    match = SAMPLE_CARD.search(html)
    assert match, f"no #sample-card in the page:\n{html[:2000]}"
    assert match.group(1), f"the labeling page offers no sample:\n{html[:2000]}"
    return int(match.group(1))


def _login(session: requests.Session, base_url: str, username: str) -> None:
    response = session.get(f"{base_url}/login/", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    csrftoken = session.cookies.get("csrftoken")
    assert csrftoken, "the login page set no csrftoken cookie"
    response = session.post(
        f"{base_url}/login/",
        data={"username": username, "password": "pw", "csrfmiddlewaretoken": csrftoken},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 302, response.text[:2000]
    assert session.cookies.get("sessionid"), "login set no session cookie"


def _wait_for_training(project, worker, label_count: int) -> ModelVersion:
    """Wait until the version that accounts for all ``label_count`` labels is done; return
    the served version.

    A batch that fills up while the previous version is still queued is absorbed by it (no
    new version), so there are 1..batches versions; what is certain is that the newest one
    was requested at ``label_count`` labels. It is done when the worker has also rescored
    the pool (``scored_sample_count``), the last step after promotion, so the served
    version cannot change any more.
    """
    deadline = time.monotonic() + TRAIN_TIMEOUT
    while True:
        versions = list(ModelVersion.objects.filter(project=project).order_by("number"))
        newest = versions[-1] if versions else None
        if newest is not None and (newest.status == ModelVersion.Status.FAILED or newest.error):
            pytest.fail(
                f"v{newest.number} ({newest.status}) failed: {newest.error}\n{worker.log()}"
            )
        if (
            newest is not None
            and newest.requested_at_label_count == label_count
            and newest.status == ModelVersion.Status.READY
            and newest.scored_sample_count is not None
        ):
            return ModelVersion.objects.get(project=project, is_served=True)
        if not worker.alive():
            pytest.fail(f"the celery worker died:\n{worker.log()}")
        if time.monotonic() > deadline:
            states = [(v.number, v.status, v.requested_at_label_count, v.is_served, v.error)
                      for v in versions]
            pytest.fail(
                f"no finished, served model version after {TRAIN_TIMEOUT:.0f}s; versions "
                f"(number, status, requested at, served, error): {states}\n"
                f"----- worker log -----\n{worker.log()}"
            )
        time.sleep(0.25)


@pytest.mark.parametrize("storage", ["local", "s3"], indirect=True)
def test_labels_over_http_retrain_in_worker_and_predict_names_the_new_version(
    live_server, storage, celery_worker, settings
):
    """Run twice: on one shared disk, and with files in an S3 bucket (moto) while this
    process and the worker have local directories of their own."""
    project = ProjectFactory(batch_size=10, labels=["0", "1", "2"], image_size=8)
    truth: dict[int, str] = {}
    for split, n in ((Sample.Split.POOL, N_POOL), (Sample.Split.TEST, N_TEST)):
        for i in range(n):
            value = project.labels[i % len(project.labels)]
            truth[ImageSampleFactory(project=project, split=split, true_label=value).pk] = value
    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    assert not ModelVersion.objects.filter(project=project).exists()

    base_url = live_server.url
    label_url = f"{base_url}/projects/{project.slug}/label/"
    with requests.Session() as session:
        _login(session, base_url, annotator.username)
        response = session.get(label_url, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text[:2000]
        assert response.url == label_url, "not logged in: the labeling page redirected"
        sample_id = _card_sample_id(response.text)

        for _ in range(BATCHES * project.batch_size):
            response = session.post(
                label_url,
                data={"sample": sample_id, "value": truth[sample_id]},
                headers={"X-CSRFToken": session.cookies["csrftoken"], "HX-Request": "true"},
                timeout=HTTP_TIMEOUT,
            )
            assert response.status_code == 200, response.text[:2000]
            assert 'role="alert"' not in response.text, response.text[:2000]
            assert "<html" not in response.text.lower(), "htmx POST should return only the card"
            sample_id = _card_sample_id(response.text)

    labels = Label.objects.filter(sample__project=project)
    assert labels.count() == BATCHES * project.batch_size
    assert all(label.value == truth[label.sample_id] for label in labels)
    assert labels.filter(sample__split=Sample.Split.POOL).exists()
    assert labels.filter(sample__split=Sample.Split.TEST).exists()

    n_labels = BATCHES * project.batch_size
    served = _wait_for_training(project, celery_worker, label_count=n_labels)

    # Every version was trained by the worker process, which got its task through Redis.
    versions = list(ModelVersion.objects.filter(project=project).order_by("number"))
    assert 1 <= len(versions) <= BATCHES
    assert [v.number for v in versions] == list(range(1, len(versions) + 1))
    assert all(v.status == ModelVersion.Status.READY for v in versions), [
        (v.number, v.status, v.error) for v in versions
    ]
    assert celery_worker.received_tasks() >= len(versions), celery_worker.log()
    assert f"{model_version_train_task.name}[" in celery_worker.log()
    assert "succeeded" in celery_worker.log()
    newest = versions[-1]
    assert newest.trained_on_label_count + newest.test_label_count == n_labels
    assert newest.error == ""
    assert newest.scored_sample_count and newest.scored_sample_count > 0  # pool rescored

    assert served.status == ModelVersion.Status.READY
    assert served.accuracy is not None and 0.0 <= served.accuracy <= 1.0
    assert served.macro_f1 is not None and 0.0 <= served.macro_f1 <= 1.0
    assert len(served.artifact_sha256) == 64
    assert (served.trained_on_label_count or 0) > 0
    assert (served.test_label_count or 0) > 0

    _token, key = api_token_create(project=project, scopes=["predict"])
    image = base64.b64encode(png_bytes(1, size=8, seed=1234)).decode()
    response = requests.post(
        f"{base_url}/api/v1/projects/{project.slug}/predict",
        json={"instances": [{"image_base64": image}]},
        headers={"Authorization": f"Token {key}"},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == served.number
    assert len(body["predictions"]) == 1
    prediction = body["predictions"][0]
    assert prediction["label"] in project.labels
    assert 0.0 <= prediction["confidence"] <= 1.0
    assert set(prediction["probabilities"]) == set(project.labels)
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert prediction["confidence"] == pytest.approx(max(prediction["probabilities"].values()))

    log = PredictionLog.objects.get(project=project, model_version=served)
    assert log.outcome == PredictionLog.Outcome.OK
    assert log.status_code == 200
    assert log.predicted_label == prediction["label"]

    if storage:  # S3: every file is in the bucket, none on this process's disk
        from django.core.files.storage import default_storage

        from core.storage import artifact_storage

        assert artifact_storage().exists(served.artifact_path)
        assert not (Path(settings.ARTIFACT_ROOT) / served.artifact_path).exists()
        image_name = Sample.objects.filter(project=project).first().image.name
        assert default_storage.exists(image_name)
        assert not (Path(settings.MEDIA_ROOT) / image_name).exists()
        assert not list(Path(settings.MEDIA_ROOT).rglob("*.png"))
