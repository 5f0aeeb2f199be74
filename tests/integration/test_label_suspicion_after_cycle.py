"""The search for wrong labels runs on real workers after the retrain cycle, never inside it.

Two workers over Redis; the pool is rescored in several slow chunks. The last chunk to
finish queues the search, so the list is stored only after the pool is rescored, and it
holds the flipped labels.
"""
from __future__ import annotations

import time

import pytest

from annotation.models import Sample
from learning.models import LabelSuspicion, LabelSuspicionRun, ModelVersion
from learning.services import model_version_request
from tests.factories import ImageSampleFactory, MembershipFactory, ProjectFactory, UserFactory, label_given

pytestmark = pytest.mark.integration

TIMEOUT = 120.0


def test_the_search_runs_after_the_pool_is_rescored(celery_workers, celery_broker):
    project = ProjectFactory(batch_size=1000, labels=["0", "1", "2"], image_size=8,
                             test_fraction=0.0)
    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator, role="annotator")
    flipped = set()
    for i in range(75):
        true = project.labels[i % 3]
        split = Sample.Split.TEST if i >= 60 else Sample.Split.POOL
        sample = ImageSampleFactory(project=project, split=split, true_label=true)
        value = true
        if split == Sample.Split.POOL and i % 10 == 0:
            value = project.labels[(i + 1) % 3]
            flipped.add(sample.pk)
        label_given(sample=sample, annotator=annotator, value=value)
    for i in range(60):
        ImageSampleFactory(project=project, true_label=project.labels[i % 3])
    slow = {"TEST_SLOW_CHUNK_SECONDS": "2", "TEST_SCORE_CHUNK": "20"}
    workers = [celery_workers.start(env=slow), celery_workers.start(env=slow)]

    version = model_version_request(project=project)
    deadline = time.monotonic() + TIMEOUT
    while (run := LabelSuspicionRun.objects.filter(project=project).first()) is None:
        version.refresh_from_db()
        assert version.status != ModelVersion.Status.FAILED, version.error
        if time.monotonic() > deadline:
            pytest.fail("no suspicion run after the retrain:\n"
                        + "\n".join(worker.log() for worker in workers))
        time.sleep(0.2)
    version.refresh_from_db()
    # Stored after the pool was rescored: several chunks of 2 s each, the last one stamping
    # the version before the run was stored.
    assert version.scored_sample_count == 60
    assert version.is_served and version.status == ModelVersion.Status.READY
    assert version.score_chunks_total and version.score_chunks_total >= 3
    assert run.version_id == version.pk and run.labels_judged == 60
    assert run.computed_at >= version.heartbeat_at  # the last chunk's stamp
    found = set(LabelSuspicion.objects.filter(project=project, reason="model")
                .values_list("sample_id", flat=True))
    assert len(found & flipped) >= 4 and len(found - flipped) <= 2, (found, flipped)
    logs = "\n".join(worker.log() for worker in workers)
    assert "learning.tasks.label_suspicion_task" in logs and "succeeded" in logs
