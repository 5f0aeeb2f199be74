"""Celery tasks of the learning app: take ids, call one service."""
from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def model_version_train_task(model_version_id: int) -> None:
    """Train a queued model version; re-delivery of a claimed or finished one is a no-op."""
    from learning.services import model_version_train

    model_version_train(version_id=model_version_id)
