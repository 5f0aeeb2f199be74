"""Read CSV and JSONL files row by row and check each row against a project; no Django.

Every string that is kept (text, external id, tabular values, column names) passes
``core.text``'s check: a NUL or invalid Unicode makes a bad row with the reason (a bad
column name refuses the file), never a failed insert halfway through the import.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from core.text import text_problem

# Long texts are checked against IMPORT_MAX_TEXT_CHARS per row; the csv module's own limit
# (131,072 characters) would otherwise reject them as a malformed file.
csv.field_size_limit(16 * 1024 * 1024)


class FileError(ValueError):
    """The file as a whole is unreadable: not UTF-8, a broken CSV quote, a bad header."""


class RowError(ValueError):
    """One row cannot be imported; the message says why."""


class RawRow(NamedTuple):  # a tuple: built once per row, so it must be cheap
    number: int  # 1-based data row, the header not counted
    line: int  # physical line where the row ends
    data: dict | None  # None when ``error`` is set
    error: str = ""


@dataclass(frozen=True)
class Columns:
    """Which columns hold the external id, the existing label and (text projects) the text."""

    id: str = "external_id"
    label: str = "label"
    text: str = "text"


class ParsedRow(NamedTuple):
    external_id: str
    label: str
    text: str = ""
    values: dict | None = None


def _text_stream(stream: BinaryIO) -> io.TextIOWrapper:
    # utf-8-sig drops the byte-order mark spreadsheet programs write.
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")


def csv_header(stream: BinaryIO) -> list[str]:
    """Return the header of a CSV file, refusing an empty or duplicated one."""
    text = _text_stream(stream)
    try:
        header = next(csv.reader(text, strict=True), None)
    except UnicodeDecodeError as exc:
        raise FileError(f"the file is not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise FileError(f"malformed CSV header: {exc}") from exc
    finally:
        text.detach()
    return _checked_header(header)


def _checked_header(header: list[str] | None) -> list[str]:
    if not header or not any(cell.strip() for cell in header):
        raise FileError("the CSV file has no header row")
    header = [cell.strip() for cell in header]
    for cell in header:
        problem = text_problem(cell)
        if problem is not None:
            raise FileError(f"the CSV header's column {cell!r} {problem}")
    if "" in header:
        raise FileError("the CSV header has an empty column name")
    duplicates = sorted({cell for cell in header if header.count(cell) > 1})
    if duplicates:
        raise FileError(f"the CSV header repeats {', '.join(duplicates)}")
    return header


def csv_rows(stream: BinaryIO) -> Iterator[RawRow]:
    """Yield the data rows of a CSV file as dicts keyed by the header.

    A row with the wrong number of cells is yielded with an error; a broken quote or
    invalid UTF-8 raises FileError, since nothing after it can be trusted.
    """
    text = _text_stream(stream)
    reader = csv.reader(text, strict=True)
    try:
        header = _checked_header(next(reader, None))
        number = 0
        for cells in reader:
            if not cells:  # a blank line
                continue
            number += 1
            if len(cells) != len(header):
                yield RawRow(number, reader.line_num, None,
                             f"expected {len(header)} cells, got {len(cells)}")
                continue
            yield RawRow(number, reader.line_num, dict(zip(header, cells)))
    except UnicodeDecodeError as exc:
        raise FileError(f"the file is not UTF-8 text near line {reader.line_num + 1} "
                        f"({exc.reason})") from exc
    except csv.Error as exc:
        raise FileError(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    finally:
        try:
            text.detach()  # leave the caller's binary stream open
        except ValueError:  # the caller closed it already
            pass


def jsonl_rows(stream: BinaryIO) -> Iterator[RawRow]:
    """Yield one dict per line of a JSON Lines file; a line that is not an object is an error."""
    number = 0
    for line_number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        number += 1
        try:
            data = json.loads(raw.decode("utf-8-sig" if line_number == 1 else "utf-8"))
        except UnicodeDecodeError:
            yield RawRow(number, line_number, None, "the line is not UTF-8 text")
            continue
        except ValueError as exc:
            yield RawRow(number, line_number, None, f"invalid JSON: {exc}")
            continue
        except RecursionError:
            yield RawRow(number, line_number, None, "invalid JSON: nested too deeply")
            continue
        if not isinstance(data, dict):
            yield RawRow(number, line_number, None, "the line is not a JSON object")
            continue
        for key in data:
            problem = text_problem(key)
            if problem is not None:
                yield RawRow(number, line_number, None, f"the field name {key!r} {problem}")
                break
        else:
            yield RawRow(number, line_number, data)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise RowError("nested JSON values are not allowed")
    return str(value).strip()


def _text_ok(value: str, what: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise RowError(f"{what} {problem}")
    return value


def _common(data: dict, columns: Columns, labels: Sequence[str]) -> tuple[str, str]:
    external_id = _cell(data.get(columns.id))
    if len(external_id) > 200:
        raise RowError("the external id is longer than 200 characters")
    _text_ok(external_id, "the external id")
    label = _cell(data.get(columns.label))
    if label and label not in labels:
        raise RowError(f"unknown label {label!r} (the project's labels: {', '.join(labels)})")
    return external_id, label


def text_row(data: dict, *, columns: Columns, labels: Sequence[str], max_chars: int) -> ParsedRow:
    """Check a text row: a non-empty text, an optional id and an optional known label."""
    if columns.text not in data:
        raise RowError(f"no {columns.text!r} field")
    text = data[columns.text]
    if not isinstance(text, str):
        raise RowError(f"{columns.text!r} is not a string")
    if not text.strip():
        raise RowError("the text is empty")
    if len(text) > max_chars:
        raise RowError(f"the text has {len(text)} characters, more than {max_chars}")
    _text_ok(text, "the text")
    external_id, label = _common(data, columns, labels)
    return ParsedRow(external_id=external_id, label=label, text=text)


def _tabular_value(value: object) -> float | int | str | None:
    """Return a number for numeric cells, a string for categorical ones, None for missing."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, (dict, list)):
        raise RowError("nested JSON values are not allowed")
    text = str(value).strip()
    if text == "" or text.lower() in ("na", "nan", "null", "none"):
        return None
    _text_ok(text, "the value")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        raise RowError(f"{text!r} is not a finite number")
    return number


def tabular_features(keys: Sequence[str], columns: Columns) -> list[str]:
    """Return the feature columns among ``keys``: all but the id and label columns."""
    return [key for key in keys if key not in (columns.id, columns.label)]


def tabular_row(data: dict, *, columns: Columns, labels: Sequence[str],
                features: Sequence[str], keys_checked: bool = False) -> ParsedRow:
    """Check a tabular row: exactly the ``features`` columns, numeric or categorical.

    ``keys_checked``: the row's keys are known to be the header's (a CSV row whose header
    passed ``features_check``), so the per-row comparison of column sets is skipped.
    """
    if not keys_checked:
        present = tabular_features(list(data), columns)
        if set(present) != set(features):
            missing = sorted(set(features) - set(present))
            extra = sorted(set(present) - set(features))
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unexpected {', '.join(extra)}"] if extra else [])
            raise RowError(f"columns differ from the project's: {'; '.join(parts)}")
    if keys_checked:  # CSV: every cell a string; try the whole row in C first
        cells = list(map(data.__getitem__, features))
        try:
            numbers = list(map(float, cells))
        except ValueError:
            pass
        else:
            total = sum(numbers)  # not finite if any is not (or if the sum overflows)
            if total - total == 0.0 and not any(map(float.is_integer, numbers)):
                external_id, label = _common(data, columns, labels)
                return ParsedRow(external_id=external_id, label=label,
                                 values=dict(zip(features, numbers)))
    values = {}
    missing_all = True
    for name in features:
        value = data[name]
        # The common cell first: a decimal that is finite and not integral. Such a string
        # has no NUL or lone surrogate (float() refuses both) and int() would refuse it, so
        # _tabular_value would answer the same float; anything else takes the full path.
        if value.__class__ is str:
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if number - number == 0.0 and not number.is_integer():
                    values[name] = number
                    missing_all = False
                    continue
        try:
            value = values[name] = _tabular_value(value)
        except RowError as exc:
            raise RowError(f"column {name!r}: {exc}") from None
        if value is not None:
            missing_all = False
    if missing_all:
        raise RowError("every value is missing")
    external_id, label = _common(data, columns, labels)
    return ParsedRow(external_id=external_id, label=label, values=values)
