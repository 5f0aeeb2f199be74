"""Numeric table rows straight out of PostgreSQL: one binary COPY, parsed by numpy.

Filling the feature cache of a million-row table through the ORM decoded every JSON
payload in Python and built a list per row (most of the first retrain after an import).
Here the database expands each row's JSON once into ``float8`` fields and sends
fixed-size binary records, which numpy reads a block at a time without a Python object per
value. Missing keys and JSON nulls come back as NaN, as ``model_input._numeric_table``
reads them; a row holding NaN or an infinity as a value is flagged, so the caller can keep
treating such a table as not cacheable. A value that PostgreSQL cannot cast (text, a
boolean, a number out of range) raises ``NotNumeric``: the caller then reads that table
the slow way, which decides exactly as before. A large fill reads the upper half of its
ids on a second connection meanwhile (``numeric_rows_parallel``): PostgreSQL's casting is
most of a fill's time, and the second backend gets the other core.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from django.db import connection

# Rows parsed per block (about 20 MB of records at 64 columns).
BLOCK_ROWS = 25_000


class NotNumeric(Exception):
    """Some value of the table is not a number PostgreSQL casts to float8."""


# PostgreSQL truncates longer identifiers: such a column cannot be a record field.
MAX_IDENTIFIER_BYTES = 63


def _as_record_fields(columns: Sequence[str]) -> bool:
    """Whether ``columns`` can be the fields of one ``jsonb_to_record`` row definition."""
    return 0 < len(set(columns)) == len(columns) and all(
        0 < len(c.encode()) <= MAX_IDENTIFIER_BYTES for c in columns)


def _statement(columns: Sequence[str]) -> tuple[sql.Composed, list]:
    """The COPY statement and its parameters for ``project_id, after, upto``.

    A wide row's JSON is stored compressed: each ``values->>column`` would decompress it
    again (64 times a row at 64 columns, most of a fill's time), so the row is expanded
    once by ``jsonb_to_record`` into float8 fields. Its casts are those of ``->>`` then
    ``::float8`` (a JSON string holding a number is read, ``true`` or text raise), and a
    row that is no JSON object reads as all missing, as ``->>`` reads it. Column names that
    cannot be field names (too long, repeated) keep the per-key extraction.
    """
    if _as_record_fields(columns):
        fields = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in columns)
        source = sql.SQL(
            "annotation_sample s LEFT JOIN LATERAL jsonb_to_record(CASE WHEN "
            "jsonb_typeof(s.\"values\") = 'object' THEN s.\"values\" END) AS r({}) ON true"
        ).format(sql.SQL(", ").join(sql.SQL("{} float8").format(sql.Identifier(c))
                                    for c in columns))
        keys: list = []
    else:
        fields = sql.SQL(", ").join(sql.SQL("(s.\"values\" ->> %s)::float8") for _ in columns)
        source = sql.SQL("annotation_sample s")
        keys = list(columns)
    cells = sql.SQL(", ").join(sql.SQL(f"COALESCE(t.c[{k + 1}], 'NaN')")
                               for k in range(len(columns)))
    # OFFSET 0 keeps the planner from inlining the subquery, which would cast every value
    # twice (once for the cell, once for the check).
    statement = sql.SQL(
        "COPY (SELECT t.id, t.c && ARRAY['NaN', 'Infinity', '-Infinity']::float8[], t.test, "
        "{cells} FROM (SELECT s.id, s.split = 'test' AS test, ARRAY[{fields}]::float8[] AS c "
        "FROM {source} "
        "WHERE s.project_id = %s AND s.id > %s AND s.id <= %s ORDER BY s.id OFFSET 0) t"
        ") TO STDOUT (FORMAT binary)"
    ).format(cells=cells, fields=fields, source=source)
    return statement, keys


HEAD = 2 + 12 + 5 + 5  # field count; id int8; bad bool; test bool (each with its length)


def _record_size(width: int) -> int:
    return HEAD + 12 * width


def _parse(buffer: bytes | memoryview, n_rows: int, width: int):
    """Return (ids, bad, test, rows) of ``n_rows`` records: id int8, bad bool, test bool,
    ``width`` float8."""
    size = _record_size(width)
    rec = np.frombuffer(buffer, dtype=np.uint8, count=n_rows * size).reshape(n_rows, size)
    head = rec[:, :HEAD].copy()
    if (head[:, :2].view(">i2").ravel() != width + 3).any() or (
            head[:, 2:6].view(">i4").ravel() != 8).any() or (
            head[:, 14:18].view(">i4").ravel() != 1).any() or (
            head[:, 19:23].view(">i4").ravel() != 1).any():
        raise ValueError("unexpected COPY record layout")
    cells = rec[:, HEAD:].reshape(n_rows, width, 12)
    if (cells[:, :, :4].copy().view(">i4") != 8).any():
        raise ValueError("unexpected COPY record layout")
    ids = head[:, 6:14].view(">i8").ravel().astype(np.int64)
    rows = cells[:, :, 4:].copy().view(">f8").reshape(n_rows, width).astype(np.float64)
    return ids, head[:, 18].astype(bool), head[:, 23].astype(bool), rows


def numeric_rows(*, project_id: int, columns: Sequence[str], after: int,
                 upto: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield (ids ascending, bad, test, rows) blocks of the project's samples
    ``after < id <= upto``.

    ``rows`` is a float matrix in ``columns`` order, NaN where the key is missing or null;
    ``bad[i]`` says row i holds NaN or an infinity as a value; ``test[i]``, that it is in
    the test split. Raises ``NotNumeric``.
    """
    width = len(columns)
    size = _record_size(width)
    header = 19  # signature, flags, extension length
    connection.ensure_connection()
    statement, keys = _statement(columns)
    params = [*keys, project_id, after, upto]
    pending = bytearray()
    skip = header
    try:
        with connection.connection.cursor() as cursor, cursor.copy(statement, params) as copy:
            for data in copy:
                if skip:
                    taken = min(skip, len(data))
                    data, skip = memoryview(data)[taken:], skip - taken
                pending += data
                if len(pending) >= BLOCK_ROWS * size:
                    n = len(pending) // size
                    yield _parse(pending, n, width)
                    del pending[:n * size]
    except psycopg.errors.DataError as exc:  # a value that is no float8
        raise NotNumeric(str(exc)) from exc
    n = len(pending) // size  # what is left, then the 2-byte trailer
    if n:
        yield _parse(pending, n, width)


def numeric_rows_parallel(*, project_id: int, columns: Sequence[str], after: int, upto: int,
                          spill: Path) -> Iterator[tuple[np.ndarray, ...]]:
    """``numeric_rows`` in the same order, the upper half of the id range read meanwhile
    on a second connection (the database's casting is most of a fill, and has a core of
    its own there). That half's rows wait in the file ``spill``, not in memory. Not inside
    a transaction: the second connection sees only committed rows.
    """
    middle = after + (upto - after) // 2
    upper: dict[str, object] = {"ids": [], "bad": [], "test": [], "error": None}
    stop = threading.Event()

    def read_upper() -> None:
        try:
            with open(spill, "wb") as fh:
                for ids, bad, test, rows in numeric_rows(project_id=project_id, columns=columns,
                                                         after=middle, upto=upto):
                    if stop.is_set():
                        return
                    rows.tofile(fh)
                    upper["ids"].append(ids)
                    upper["bad"].append(bad)
                    upper["test"].append(test)
        except BaseException as exc:  # raised again by the reading thread
            upper["error"] = exc
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=read_upper, name="cache-fill-upper", daemon=True)
    thread.start()
    try:
        yield from numeric_rows(project_id=project_id, columns=columns, after=after, upto=middle)
        thread.join()
        if upper["error"] is not None:
            raise upper["error"]
        with open(spill, "rb") as fh:
            for ids, bad, test in zip(upper["ids"], upper["bad"], upper["test"]):
                rows = np.fromfile(fh, dtype=np.float64, count=len(ids) * len(columns))
                yield ids, bad, test, rows.reshape(len(ids), len(columns))
    finally:
        stop.set()
        thread.join()
        spill.unlink(missing_ok=True)
