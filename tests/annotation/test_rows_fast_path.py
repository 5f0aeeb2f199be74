"""The CSV fast paths of ``rows.tabular_row`` answer exactly what the per-cell path answers."""
import json
import random

import pytest

from annotation import rows

COLUMNS = rows.Columns()
CELLS = ["0.5", "-1.25", "3", "3.0", "1e5", "1.5e-3", " 2.5 ", "", "NA", "nan", "NaN", "inf",
         "-Infinity", "abc", "1_000.5", "1_000", "0x10", "１.５", "1.5\x00", "\ud800.5",
         "99999999999999999999", "1e400", "-0.0", "0.1", "null", "None", "True"]


def _reference(cells: dict) -> rows.ParsedRow | str:
    """The check as it was before the fast paths: ``_tabular_value`` on every cell."""
    values = {}
    for name, cell in cells.items():
        try:
            values[name] = rows._tabular_value(cell)
        except rows.RowError as exc:
            return f"column {name!r}: {exc}"
    if all(value is None for value in values.values()):
        return "every value is missing"
    return rows.ParsedRow(external_id="", label="", values=values)


def _slow(cells: dict) -> rows.ParsedRow | str:
    try:
        return rows.tabular_row(cells, columns=COLUMNS, labels=["a"], features=list(cells))
    except rows.RowError as exc:
        return str(exc)


def _fast(cells: dict) -> rows.ParsedRow | str:
    try:
        return rows.tabular_row(cells, columns=COLUMNS, labels=["a"], features=list(cells),
                                keys_checked=True)
    except rows.RowError as exc:
        return str(exc)


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_matches_the_cell_by_cell_check(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 6)
    pool = CELLS if seed % 2 else ["0.5", "-1.25", "2.75", "1.5e-3", "0.1"] + CELLS[:3]
    cells = {f"x{i}": rng.choice(pool) for i in range(n)}
    slow, fast = _slow(cells), _fast(cells)
    assert fast == slow == _reference(cells)
    if isinstance(slow, rows.ParsedRow):  # the same types too (3 stays an int, 0.5 a float)
        assert json.dumps(fast.values) == json.dumps(slow.values)


def test_every_cell_alone_matches():
    for cell in CELLS:
        for cells in ({"x0": cell, "x1": "0.5"}, {"x0": cell}):
            assert _fast(cells) == _slow(cells) == _reference(cells), cell
