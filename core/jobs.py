"""Start Celery tasks by their registered name, so a service never imports the tasks that call it.

Tasks take ids and call services; services start tasks. Naming the task instead of
importing its module keeps that a one-way import (tasks -> services) in every app. Each
app's ``AppConfig.ready()`` imports its ``tasks`` module, which registers the names.

A broker that cannot be reached makes sending fail (``kombu.exceptions.OperationalError``,
after Celery's publish retries, about a second). A caller that keeps its own record of
what it asked for and asks again later (learning's retrain cycle) passes ``on_failure``
and is never interrupted; without it the error is raised, as before.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from celery import current_app, group, signature
from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# What sending raises when the broker is down or unreachable.
BROKER_ERRORS = (OperationalError, ConnectionError, TimeoutError)


def task_start_after_commit(
    name: str, *args: object, on_failure: Callable[[Exception], None] | None = None
) -> None:
    """Send task ``name`` with ``args`` once the surrounding transaction commits (at once
    outside one), so the worker finds the rows the transaction wrote.

    With ``on_failure``, a broker error is logged and handed to it instead of raised into
    the request whose transaction just committed.
    """
    def send() -> None:
        try:
            signature(name, args=args).delay()
        except BROKER_ERRORS as exc:
            if on_failure is None:
                raise
            logger.warning("could not send %s%r to the broker: %s", name, args, exc)
            on_failure(exc)

    transaction.on_commit(send)


def task_group_start(name: str, arg_lists: Iterable[tuple]) -> Exception | None:
    """Send one task ``name`` per tuple of ``arg_lists``, as a group that workers share.

    Returns None when the broker took them, else the broker error (logged, not raised).
    """
    try:
        group(signature(name, args=args, immutable=True) for args in arg_lists).apply_async()
    except BROKER_ERRORS as exc:
        logger.warning("could not send a group of %s to the broker: %s", name, exc)
        return exc
    return None


def tasks_run_inline() -> bool:
    """Whether tasks run in the sending process (eager Celery: tests), not on workers."""
    return bool(current_app.conf.task_always_eager)


def workers_answering(timeout: float = 2.0) -> list[str] | None:
    """Names of the Celery workers that answer a ping within ``timeout`` seconds (returns
    at the first answer); None when the broker itself cannot be reached."""
    try:
        replies = current_app.control.ping(timeout=timeout, limit=1) or []
    except BROKER_ERRORS as exc:
        logger.warning("could not ping the workers: %s", exc)
        return None
    return sorted(name for reply in replies for name in reply)
