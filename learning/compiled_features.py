"""Fitted featurizers compiled into plain numpy and dict lookups, for the hot paths.

A fitted ``TabularFeaturizer`` transforms one row in about 8 ms, nearly all of it pandas
typing each column and the ColumnTransformer's checks; a fitted ``TextFeaturizer`` pays
FeatureUnion's and the vectorizers' per-call machinery. Predicting and rescoring only need
the numbers the fit learned, so :func:`compile_featurizer` takes them out once:

- tabular: per numeric column its fill value (the median), mean and scale; per categorical
  column a dict from category to its one-hot column (unknown and infrequent categories to
  the shared infrequent column, or to none, as the encoder does);
- text (vocabulary TF-IDF, ``learning/compiled_text.py``): per vectorizer its analyzer,
  vocabulary and idf, with the sublinear tf and L2 norm of each block.

Other featurizers (hashing TF-IDF, images) are not compiled; callers keep the sklearn
transform. A compiled transform is only returned after it reproduced the featurizer's own
matrix on a probe batch built from what the fit learned (categories, unknowns, missing
values), so a scikit-learn upgrade that changes a detail falls back instead of drifting.

Values, tabular: ``None`` is missing; numbers and numeric strings (``"3.5"``) are numbers,
``True``/``False`` are 1 and 0, as pandas reads them (one exception: ``"1_000"`` is 1000
here, missing there); a category is the value's ``str()``.
With ``strict=True`` (requests), a numeric column refuses anything else, including NaN and
infinities (``CellError``, which the API answers with a 400); without (rescoring stored
rows) such a value counts as missing, so one odd sample cannot fail a whole chunk.
No Django imports.
"""
from __future__ import annotations

import logging
import math
import operator
from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from learning import features
from learning.compiled_text import LeanText, probe_texts

logger = logging.getLogger(__name__)

MISSING = "__missing__"  # the categorical imputer's fill value


class CellError(features.FeatureError):
    """One value of one row cannot be used (strict mode): names the row and the column."""

    def __init__(self, index: int, column: str, message: str):
        super().__init__(f"row {index}: column {column!r} {message}")
        self.index, self.column, self.message = index, column, message


def _number(value: object) -> float:
    """The value as pandas' ``to_numeric`` reads it, NaN when it does not parse."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)):  # bool included: 1.0 / 0.0
        return float(value)
    if isinstance(value, str):  # as numpy parses them (unlike pandas, "1_000" is 1000)
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def _category(value: object) -> str:
    return MISSING if value is None else (value if type(value) is str else str(value))


class LeanTabular:
    """The transform of a fitted ``TabularFeaturizer``, without pandas or sklearn."""

    kind = "tabular"

    def __init__(self, featurizer: features.TabularFeaturizer):
        ct = featurizer.transformer_
        fitted = {name: (pipe, cols) for name, pipe, cols in ct.transformers_
                  if name in ("num", "cat")}
        self.columns = list(featurizer.columns_)
        self.numeric = list(featurizer.numeric_columns_)
        self.categorical = list(featurizer.categorical_columns_)
        n_num = len(self.numeric)
        if n_num:
            pipe = fitted["num"][0]
            self.fill = np.asarray(pipe.named_steps["impute"].statistics_, dtype=np.float64)
            scaler = pipe.named_steps["scale"]
            self.mean = scaler.mean_ if scaler.with_mean else None
            self.scale = scaler.scale_ if scaler.with_std else None
        self.width = n_num
        self.lookups: list[tuple[dict[str, int], int]] = []  # (category -> column, unknown)
        if self.categorical:
            encoder = fitted["cat"][0].named_steps["onehot"]
            offset = n_num
            for j, (cats, n_out) in enumerate(zip(encoder.categories_, encoder._n_features_outs)):
                self.lookups.append(_category_lookup(encoder, j, cats, offset, n_out))
                offset += n_out
            self.width = offset

    # -- input shapes ------------------------------------------------------------------
    def rows(self, rows: Sequence[Mapping | None], *, strict: bool = False) -> np.ndarray:
        """Transform column -> value rows (a missing key is a missing value)."""
        rows = [row or {} for row in rows]
        out = np.zeros((len(rows), self.width), dtype=np.float64)
        if self.numeric:
            out[:, :len(self.numeric)] = self._scaled(self._numbers(rows, strict))
        for (lookup, unknown), column in zip(self.lookups, self.categorical):
            hot = [lookup.get(_category(row.get(column)), unknown) for row in rows]
            self._set_hot(out, hot)
        return out

    def matrix(self, X: np.ndarray, columns: Sequence[str], *, overwrite: bool = False
               ) -> np.ndarray:
        """Transform a float table whose columns are ``columns`` (NaN: missing), as the
        feature cache stores numeric tables; ``overwrite``: ``X`` may be reused for the
        result (rescoring passes a chunk's own copy, and saves allocating two more)."""
        X = np.asarray(X, dtype=np.float64)
        if (not self.lookups and self.numeric == list(columns) and X.ndim == 2
                and X.shape[1] == len(columns)):
            return self._numeric_in_place(X if overwrite else X.copy())
        position = {c: i for i, c in enumerate(columns)}
        out = np.zeros((len(X), self.width), dtype=np.float64)
        if self.numeric:
            values = X[:, [position[c] for c in self.numeric]] if all(
                c in position for c in self.numeric) else self._take(X, position, self.numeric)
            values = np.where(np.isfinite(values), values, np.nan)
            out[:, :len(self.numeric)] = self._scaled(values)
        for (lookup, unknown), column in zip(self.lookups, self.categorical):
            at = position.get(column)
            keys = ([MISSING] * len(X) if at is None else
                    [MISSING if math.isnan(v) else str(v) for v in X[:, at].tolist()])
            self._set_hot(out, [lookup.get(k, unknown) for k in keys])
        return out

    def __call__(self, X, *, strict: bool = False) -> np.ndarray:
        """Transform model input of any shape the featurizer takes."""
        if isinstance(X, pd.DataFrame):
            X = X.astype(object).where(X.notna(), None).to_dict("records")
        elif isinstance(X, np.ndarray):
            return self.matrix(X, [f"x{i}" for i in range(X.shape[1])])
        return self.rows(X, strict=strict)

    # -- pieces ------------------------------------------------------------------------
    def _numeric_in_place(self, values: np.ndarray) -> np.ndarray:
        """``_scaled`` of an all-numeric table in its own memory: the same operations in
        the same order, so the same numbers, without a temporary per step."""
        missing = ~np.isfinite(values)
        if missing.any():
            rows, cols = np.nonzero(missing)
            values[rows, cols] = self.fill[cols]
        if self.mean is not None:
            values -= self.mean
        if self.scale is not None:
            values /= self.scale
        return values

    @staticmethod
    def _take(X, position, names):
        out = np.full((len(X), len(names)), np.nan)
        for k, name in enumerate(names):
            if name in position:
                out[:, k] = X[:, position[name]]
        return out

    def _numbers(self, rows: list[Mapping], strict: bool) -> np.ndarray:
        names = self.numeric
        width = len(names)
        try:  # each row's values in one C call: rows the API checked have every column
            take = operator.itemgetter(*names)
            flat = list(chain.from_iterable(map(take, rows))) if width > 1 else list(map(take, rows))
        except KeyError:  # a missing key is a missing value
            flat = [row.get(c) for row in rows for c in names]
        try:  # numbers and None (NaN) in one C loop; strings are looked at below
            values = np.array(flat, dtype=np.float64).reshape(len(rows), width)
        except (TypeError, ValueError, OverflowError):
            values = None
        if values is not None:
            bad = ~np.isfinite(values)
            count = int(np.count_nonzero(bad))
            if count == 0 or count == flat.count(None):  # each None is one NaN: all missing
                return values
            for i, k in zip(*np.nonzero(bad)):  # None is missing; "nan", "inf", 1e999 are not
                values[i, k] = self._cell(flat[i * width + k], int(i), names[k], strict)
            return values
        table = [flat[i:i + width] for i in range(0, len(flat), width)]
        values = np.empty((len(rows), len(names)))
        for i, cells in enumerate(table):
            for k, value in enumerate(cells):
                values[i, k] = (float(value) if type(value) in (int, float) and
                                math.isfinite(value) else self._cell(value, i, names[k], strict))
        return values

    @staticmethod
    def _cell(value: object, index: int, column: str, strict: bool) -> float:
        """A value that is not a plain finite number: parsed, missing, or refused."""
        number = _number(value)
        if math.isfinite(number):
            return number
        if value is None or not strict:  # pandas reads what does not parse as missing
            return math.nan
        raise CellError(index, column, "must be a finite number or null")

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        if missing.any():
            values = np.where(missing, self.fill, values)
        if self.mean is not None:
            values = values - self.mean
        if self.scale is not None:
            values = values / self.scale
        return values

    @staticmethod
    def _set_hot(out: np.ndarray, hot: list[int]) -> None:
        hot = np.asarray(hot, dtype=np.int64)
        rows = np.flatnonzero(hot >= 0)
        out[rows, hot[rows]] = 1.0


def _category_lookup(encoder, j: int, cats, offset: int, n_out: int) -> tuple[dict[str, int], int]:
    """Map each category of input column ``j`` to its output column (or -1), probing the
    encoder itself; also return where an unknown category goes."""
    unknown = "\x00unknown\x00"  # no text that passed the text check can equal it
    probe = np.empty((len(cats) + 1, len(encoder.categories_)), dtype=object)
    for k, other in enumerate(encoder.categories_):
        probe[:, k] = other[0]
    probe[:, j] = [*cats, unknown]
    start = int(sum(encoder._n_features_outs[:j]))
    block = np.asarray(encoder.transform(probe))[:, start:start + n_out]
    hot = np.where(block.any(axis=1), block.argmax(axis=1) + offset, -1)
    return {str(c): int(h) for c, h in zip(cats, hot[:-1])}, int(hot[-1])


def _probe_rows(featurizer: features.TabularFeaturizer, lean: LeanTabular) -> list[dict]:
    """Rows touching every category, an unknown one, missing cells and scaled numbers."""
    rng = np.random.default_rng(0)
    n = max([8, *(len(lookup) + 2 for lookup, _u in lean.lookups)])
    rows = []
    for i in range(n):
        row: dict = {}
        for k, column in enumerate(lean.numeric):
            center = lean.mean[k] if lean.mean is not None else 0.0
            spread = lean.scale[k] if lean.scale is not None else 1.0
            row[column] = None if (i + k) % 5 == 0 else float(center + spread * rng.normal())
        for (lookup, _unknown), column in zip(lean.lookups, lean.categorical):
            cats = list(lookup)
            pick = i % (len(cats) + 2)
            row[column] = (cats[pick] if pick < len(cats) else
                           None if pick == len(cats) else "never seen in the fit")
        rows.append(row)
    return rows


def compile_featurizer(featurizer) -> LeanTabular | LeanText | None:
    """Return the lean transform of a fitted featurizer, or None when there is none or it
    does not reproduce the featurizer's matrix on a probe batch."""
    try:
        if isinstance(featurizer, features.TabularFeaturizer):
            lean = LeanTabular(featurizer)
            probe = _probe_rows(featurizer, lean)
            same = np.allclose(lean.rows(probe), featurizer.transform(probe),
                               rtol=1e-12, atol=1e-12)
        elif isinstance(featurizer, features.TextFeaturizer) and not featurizer.hashing:
            lean = LeanText(featurizer)
            probe = probe_texts(lean)
            diff = lean(probe) - featurizer.union_.transform(features.text_list(probe))
            same = diff.nnz == 0 or float(abs(diff).max()) <= 1e-12
        else:
            return None
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        logger.info("cannot compile %s: %s", type(featurizer).__name__, exc)
        return None
    if not same:
        logger.warning("compiled %s differs from its featurizer; using the featurizer",
                       type(featurizer).__name__)
        return None
    return lean


def split_featurizer(estimator) -> tuple[object | None, object]:
    """Return (fitted featurizer, the rest) of an artifact: a pipeline whose first step
    featurizes (text, tabular), else (None, the estimator)."""
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1 and isinstance(
            estimator.steps[0][1], (features.TabularFeaturizer, features.TextFeaturizer)):
        return estimator.steps[0][1], estimator[1:]
    return None, estimator
