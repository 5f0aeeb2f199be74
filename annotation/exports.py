"""Write exported rows as CSV or JSON Lines, chunk by chunk; no Django."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator, Sequence

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
# Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
ROWS_PER_CHUNK = 500


def csv_safe(value: object) -> object:
    """Return ``value`` with a leading quote if a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _plain(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def csv_chunks(rows: Iterable[dict], fields: Sequence[str]) -> Iterator[str]:
    """Yield the header, then CSV text in chunks of ROWS_PER_CHUNK rows, formulas neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(fields)
    count = 0
    for row in rows:
        writer.writerow([csv_safe(_plain(row[name])) if row[name] is not None else ""
                         for name in fields])
        count += 1
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_chunks(rows: Iterable[dict], fields: Sequence[str]) -> Iterator[str]:
    """Yield JSON Lines text in chunks of ROWS_PER_CHUNK rows."""
    lines: list[str] = []
    for row in rows:
        lines.append(json.dumps({name: _plain(row[name]) for name in fields}, ensure_ascii=False))
        if len(lines) == ROWS_PER_CHUNK:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def export_chunks(rows: Iterable[dict], fields: Sequence[str], fmt: str) -> Iterator[str]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return csv_chunks(rows, fields) if fmt == "csv" else jsonl_chunks(rows, fields)
