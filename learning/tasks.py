"""Celery tasks of the learning app: take ids, call one service."""
from celery import shared_task
from django.db import transaction

from annotation.models import Project
from learning.services import model_version_train, pool_cold_start, pool_score_chunk


@shared_task(acks_late=True, ignore_result=True)
def model_version_train_task(model_version_id: int) -> None:
    """Train a queued model version; re-delivery of a claimed or finished one is a no-op."""
    model_version_train(version_id=model_version_id)


@shared_task(acks_late=True, ignore_result=True)
def pool_score_chunk_task(model_version_id: int, scorer_id: int, lo: int, hi: int) -> None:
    """Score pool samples with ids in [lo, hi] under version ``scorer_id``; count the chunk.

    Scores are idempotent to rewrite; a re-delivered chunk only counts twice, which ends
    the bookkeeping early but leaves every score written.
    """
    pool_score_chunk(version_id=model_version_id, scorer_id=scorer_id, lo=lo, hi=hi)


@shared_task(acks_late=True, ignore_result=True)
def pool_cold_start_task(project_id: int) -> None:
    """Order a model-less project's queue by k-means diversity; a no-op once a model exists."""
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        pool_cold_start(project=project)


def pool_cold_start_after_commit(*, project_id: int) -> None:
    """Queue the cold start once the surrounding transaction commits (annotation's
    ``samples_added`` hook): a worker must find the samples."""
    transaction.on_commit(lambda: pool_cold_start_task.delay(project_id))
