"""Many annotators label one project at once over HTTP: no sample is handed out twice, no label lost.

Runs against whatever database the suite uses: 50 clients on PostgreSQL (CI), 8 on SQLite
(the embedded default; `.ci/run` runs this file once more without DATABASE_URL).
"""
from __future__ import annotations

import re
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from annotation.models import Label, Membership, Sample
from tests.factories import ImageSampleFactory, ProjectFactory, UserFactory

SAMPLE_ID = re.compile(r'data-sample="(\d+)"')
LABELS_PER_CLIENT = 6


def _login(base: str, username: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/login/", timeout=30)
    response = session.post(
        f"{base}/login/",
        data={"username": username, "password": "pw",
              "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=30,
    )
    assert "/login/" not in response.url, f"{username} could not log in"
    return session


def _shown(html: str) -> int | None:
    match = SAMPLE_ID.search(html)
    return int(match.group(1)) if match and match.group(1) else None


def _contested_project(clients: int):
    """A project with fewer samples than clients x labels, so the queue runs dry while
    clients compete. Returns it and its sample count."""
    project = ProjectFactory(batch_size=100_000, test_fraction=0.2)
    total = clients * LABELS_PER_CLIENT - clients // 2
    for i in range(total):
        ImageSampleFactory(project=project, split="test" if i % 5 == 0 else "pool",
                           true_label=project.labels[i % 3])
    return project, total


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_parallel_annotators_never_share_a_sample_and_lose_no_label(live_server):
    clients = 50 if connection.vendor == "postgresql" else 8
    project, total = _contested_project(clients)
    users = []
    for i in range(clients):
        user = UserFactory(username=f"annotator-{i}")
        Membership.objects.create(project=project, user=user, role="annotator")
        users.append(user)

    base = live_server.url
    url = f"{base}/projects/{project.slug}/label/"
    handed_to: dict[int, set[str]] = defaultdict(set)
    accepted: list[tuple[str, int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def annotate(username: str) -> None:
        session = _login(base, username)
        start.wait(timeout=60)
        sample_id = _shown(session.get(url, timeout=60).text)
        for _ in range(LABELS_PER_CLIENT):
            if sample_id is None:
                return
            with lock:
                handed_to[sample_id].add(username)
            response = session.post(
                url, data={"sample": sample_id, "value": project.labels[sample_id % 3]},
                headers={"X-CSRFToken": session.cookies["csrftoken"], "HX-Request": "true"},
                timeout=60,
            )
            assert response.status_code == 200, response.text[:300]
            if 'class="error"' in response.text:
                with lock:
                    errors.append(f"{username}: {response.text[:200]}")
            else:
                with lock:
                    accepted.append((username, sample_id))
            sample_id = _shown(response.text)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(annotate, user.username) for user in users]:
            future.result()

    shared = {sid: who for sid, who in handed_to.items() if len(who) > 1}
    assert not shared, (
        f"{len(shared)} samples handed to several annotators, e.g. {list(shared.items())[:3]}"
    )
    assert not errors, errors[:3]
    labels = list(Label.objects.filter(sample__project=project).values_list(
        "annotator__username", "sample_id"))
    assert sorted(labels) == sorted(accepted)
    assert max(Counter(sid for _u, sid in labels).values()) == 1
    # Every sample is labeled except those leased by a client after its last label.
    assert len(labels) >= total - clients
    labeled = Sample.objects.filter(project=project, status="labeled").count()
    assert labeled == len(labels)


class _CountingApp:
    def __init__(self, app) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.app(environ, start_response)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_parallel_api_clients_on_the_fast_path_never_share_a_sample(live_server):
    """The same guarantees through the labeling API as served in production (config.wsgi's
    fast path in front of Django), with personal tokens."""
    from annotation.labeling_fast_path import LabelingFastPath
    from annotation.services import personal_token_create

    clients = 50 if connection.vendor == "postgresql" else 8
    project, total = _contested_project(clients)
    keys = {}
    for i in range(clients):
        user = UserFactory(username=f"api-annotator-{i}")
        Membership.objects.create(project=project, user=user, role="annotator")
        keys[user.username] = personal_token_create(project=project, user=user)[1]

    httpd = live_server.thread.httpd
    django_app = _CountingApp(httpd.get_app())
    httpd.set_app(LabelingFastPath(django_app))
    base = f"{live_server.url}/api/v1/projects/{project.slug}"
    handed_to: dict[int, set[str]] = defaultdict(set)
    accepted: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def annotate(username: str) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {keys[username]}"
        start.wait(timeout=60)
        for _ in range(LABELS_PER_CLIENT):
            answer = session.get(f"{base}/next", timeout=60)
            assert answer.status_code == 200, answer.text[:300]
            sample = answer.json()["sample"]
            if sample is None:
                return
            with lock:
                handed_to[sample["id"]].add(username)
            value = project.labels[sample["id"] % 3]
            response = session.post(f"{base}/labels", json={"sample": sample["id"], "value": value},
                                    timeout=60)
            assert response.status_code == 201, response.text[:300]
            with lock:
                accepted.append((username, sample["id"]))

    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for future in [pool.submit(annotate, name) for name in keys]:
                future.result()
    finally:
        httpd.set_app(django_app.app)

    assert django_app.calls == 0, "requests went through Django instead of the fast path"
    shared = {sid: who for sid, who in handed_to.items() if len(who) > 1}
    assert not shared, f"{len(shared)} samples handed to several annotators"
    labels = list(Label.objects.filter(sample__project=project).values_list(
        "annotator__username", "sample_id"))
    assert sorted(labels) == sorted(accepted)
    assert len(labels) >= total - clients
    assert Sample.objects.filter(project=project, status="labeled").count() == len(labels)
