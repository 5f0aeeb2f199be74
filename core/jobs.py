"""Start Celery tasks by their registered name, so a service never imports the tasks that call it.

Tasks take ids and call services; services start tasks. Naming the task instead of
importing its module keeps that a one-way import (tasks -> services) in every app. Each
app's ``AppConfig.ready()`` imports its ``tasks`` module, which registers the names.
"""
from __future__ import annotations

from collections.abc import Iterable

from celery import group, signature
from django.db import transaction


def task_start_after_commit(name: str, *args: object) -> None:
    """Send task ``name`` with ``args`` once the surrounding transaction commits (at once
    outside one), so the worker finds the rows the transaction wrote."""
    transaction.on_commit(lambda: signature(name, args=args).delay())


def task_group_start(name: str, arg_lists: Iterable[tuple]) -> None:
    """Send one task ``name`` per tuple of ``arg_lists``, as a group that workers share."""
    group(signature(name, args=args, immutable=True) for args in arg_lists).apply_async()
