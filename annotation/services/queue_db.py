"""How the queue services talk to the database: short raw statements and the PL/pgSQL calls.

The small statements run on every hand-out and submit are written in SQL (PostgreSQL and
SQLite alike): building one through the ORM costs several times the CPU of running it,
and the API spends most of its time on them. On PostgreSQL the hand-out (overlap 1) and
the submit are one round trip each: PL/pgSQL functions (``annotation.queue_functions_sql``)
that mirror the Python paths of ``leases`` and ``submit``, which stay the specification
and SQLite's path. Callers look ``has_queue_functions`` up on this module at call time,
so a test can switch the functions off here.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

import psycopg
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection

from annotation.models import Project, Sample


def table(model) -> str:
    """The model's table name, quoted for raw SQL."""
    return connection.ops.quote_name(model._meta.db_table)


def db_datetime(value: dt.datetime):
    """``value`` as the database adapter takes it in a raw statement's parameters."""
    return connection.ops.adapt_datetimefield_value(value)


def fetch_one(sql: str, params: Sequence) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def execute(sql: str, params: Sequence) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def has_queue_functions() -> bool:
    """Whether migration 0005 created the PL/pgSQL queue functions on this database."""
    return connection.vendor == "postgresql"


def lease_next_in_database(*, project: Project, annotator: AbstractBaseUser, now: dt.datetime,
                           expires: dt.datetime) -> Sample | None:
    """``leases._lease_next`` for overlap 1 in one statement, atomic on its own.

    Outside a transaction its commit is asynchronous (a lease is not a label); never inside
    one, whose own writes it would make asynchronous too.
    """
    asynchronous = connection.get_autocommit() and not connection.in_atomic_block
    row = _call_queue_function(
        "SELECT * FROM annotation_lease_next(%s::bigint, %s::integer, %s::double precision,"
        " %s::timestamptz, %s::timestamptz, %s::boolean)",
        [project.pk, annotator.pk, project.test_fraction, now, expires, asynchronous],
    )
    if row is None:
        return None
    *columns, lease_expires = row
    loaded = dict(zip(_LEASED_COLUMNS, columns))
    loaded["values"] = _VALUES_FIELD.from_db_value(loaded["values"], None, connection)
    sample = Sample.from_db(connection.alias, _LEASED_FIELDS,
                            [loaded[name] for name in _LEASED_FIELDS])
    sample.lease_expires = lease_expires
    return sample


# What annotation_lease_next returns of the sample, and the same in the model's field
# order, which Model.from_db wants.
_LEASED_COLUMNS = ("id", "project_id", "external_id", "text", "values", "image", "split",
                   "origin")
_LEASED_FIELDS = [f.attname for f in Sample._meta.concrete_fields if f.attname in _LEASED_COLUMNS]
_VALUES_FIELD = Sample._meta.get_field("values")


def label_submit_in_database(*, project: Project, sample_id: int, annotator: AbstractBaseUser,
                             value: str, duration_ms: int | None, suggested_version: int | None,
                             now: dt.datetime) -> tuple:
    """One call of ``annotation_label_submit``: (outcome, label id, value, duration_ms,
    created_at, is_correction, served_version, suggested_version, current labels, start of
    the batch); see its text."""
    return _call_queue_function(
        "SELECT * FROM annotation_label_submit(%s::bigint, %s::bigint, %s::integer,"
        " %s::varchar, %s::integer, %s::integer, %s::integer, %s::timestamptz)",
        [project.pk, sample_id, annotator.pk, value, duration_ms, suggested_version,
         project.overlap, now],
    )


def _call_queue_function(sql: str, params: Sequence) -> tuple | None:
    """Run one of the queue functions on Django's connection and return its row.

    Straight on the psycopg connection with server-side binding: Django's cursor quotes
    every parameter into the SQL text on the client and wraps each call, which cost more
    CPU than the call itself on every hand-out and submit. Django's transaction state
    holds (same connection), database errors become Django's, and the call is logged
    wherever Django logs queries (DEBUG, tests).
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if connection.queries_logged:
        shown = psycopg.ClientCursor(connection.connection).mogrify(sql, params)
        connection.queries_log.append(
            {"sql": shown, "time": f"{time.monotonic() - started:.3f}"})
    return row
