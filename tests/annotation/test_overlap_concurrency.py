"""Overlap 2 under real concurrency: threads lease and label at once through the services.

Marked integration (run it with the PostgreSQL suite); on SQLite it runs too, serialized
by the database's write lock.
"""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from annotation.models import Label, Membership, Sample
from annotation.services import label_submit, sample_lease_next
from tests.factories import ImageSampleFactory, ProjectFactory, UserFactory


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_overlap_two_never_gives_a_sample_to_more_than_two_or_twice_to_one():
    workers = 16 if connection.vendor == "postgresql" else 6
    project = ProjectFactory(batch_size=100_000, test_fraction=0.2, overlap=2)
    total = workers * 2
    for i in range(total):
        ImageSampleFactory(project=project, split="test" if i % 5 == 0 else "pool")
    users = [UserFactory(username=f"overlap-{i}") for i in range(workers)]
    for user in users:
        Membership.objects.create(project=project, user=user, role="annotator")
    start = threading.Barrier(workers)
    handed: list[tuple[int, int]] = []
    lock = threading.Lock()

    def annotate(user) -> None:
        try:
            start.wait(timeout=30)
            while True:
                sample = sample_lease_next(project=project, annotator=user)
                if sample is None:
                    return
                with lock:
                    handed.append((sample.pk, user.pk))
                label_submit(sample=sample, annotator=user, value="0")
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(annotate, user) for user in users]:
            future.result()

    assert len(handed) == len(set(handed)), "a sample was handed twice to one annotator"
    per_sample = Counter(sample_id for sample_id, _user in handed)
    assert max(per_sample.values()) == 2
    labels = Counter(Label.objects.filter(sample__project=project).values_list("sample_id", flat=True))
    assert labels == per_sample and set(labels.values()) == {2}
    assert Sample.objects.filter(project=project, status="labeled", label_count=2).count() == total
