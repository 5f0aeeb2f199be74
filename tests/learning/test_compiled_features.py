"""Compiled featurizers give the fitted featurizer's own matrix, and refuse what they must."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from learning import features
from learning.compiled_features import CellError, LeanTabular, LeanText, compile_featurizer

CATEGORIES = ["red", "green", "blue", "teal"]


def _rows(rng, n, *, n_numeric=12, rare=60):
    rows = []
    for _ in range(n):
        row = {f"x{k}": float(rng.normal(k, 1 + k)) for k in range(n_numeric)}
        row["colour"] = rng.choice(CATEGORIES + [None])
        row["rare"] = f"r{rng.integers(rare)}"  # more than max_categories: an infrequent column
        row["size"] = rng.choice([1, 2, 3, "L"])  # numbers and a string: categorical
        for k in rng.choice(n_numeric + 3, rng.integers(0, 4), replace=False):
            row[list(row)[k]] = None
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def tabular():
    rng = np.random.default_rng(0)
    featurizer = features.TabularFeaturizer(max_categories=20).fit(_rows(rng, 600))
    lean = compile_featurizer(featurizer)
    assert isinstance(lean, LeanTabular)
    return featurizer, lean


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_tabular_rows_give_the_featurizers_matrix(tabular, seed, n):
    featurizer, lean = tabular
    rows = _rows(np.random.default_rng(seed + 10), n, rare=90)  # unseen rare categories too
    np.testing.assert_allclose(lean.rows(rows), featurizer.transform(rows), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lean.rows(rows, strict=True), featurizer.transform(rows),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("row", [
    {"colour": None, "rare": None, "size": None, **{f"x{k}": None for k in range(12)}},
    {"colour": "never seen", "rare": "r999", "size": "XXL"},  # unknown categories
    {"colour": None, "size": None, "x0": None},           # missing in a one-row batch
    {"x0": "3.5", "x1": " 2 ", "x2": True, "x3": 7},       # numbers as strings, bool, int
    {"colour": 5, "size": 2.0, "rare": False},            # numbers in categorical columns
    {"x0": 1.0, "unexpected": "ignored"},
])
def test_tabular_hostile_but_usable_rows_match_the_featurizer(tabular, row):
    featurizer, lean = tabular
    for batch in ([row], [row, _rows(np.random.default_rng(3), 1)[0]]):
        np.testing.assert_allclose(lean.rows(batch, strict=True), featurizer.transform(batch),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("value", ["abc", "nan", "NaN", "inf", "-Infinity", "1e400",
                                   float("nan"), float("inf"), -float("inf"), "0x10"])
def test_tabular_strict_refuses_non_numbers_nan_and_infinities_naming_the_cell(tabular, value):
    _featurizer, lean = tabular
    good = _rows(np.random.default_rng(4), 3)
    bad = {**good[1], "x4": value}
    with pytest.raises(CellError) as caught:
        lean.rows([good[0], bad, good[2]], strict=True)
    assert (caught.value.index, caught.value.column) == (1, "x4")
    assert "finite number or null" in str(caught.value)
    assert np.isfinite(lean.rows([good[0], bad])).all()  # stored rows: missing, not fatal


def test_tabular_matrix_of_cached_numbers_matches_the_featurizer():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 64))
    X[rng.random(X.shape) < 0.05] = np.nan
    columns = [f"x{i}" for i in range(64)]
    frame = pd.DataFrame(X, columns=columns)
    featurizer = features.TabularFeaturizer().fit(frame)
    lean = compile_featurizer(featurizer)
    np.testing.assert_allclose(lean.matrix(X[:77], columns), featurizer.transform(frame[:77]),
                               rtol=0, atol=1e-12)
    shuffled = columns[::-1]
    np.testing.assert_allclose(lean.matrix(X[:, ::-1], shuffled), featurizer.transform(frame),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(lean(frame[:5]), featurizer.transform(frame[:5]), atol=1e-12)
    # All-numeric in the cache's order takes the in-place path: the same bits as the
    # general one (columns reordered), infinities read as missing, the input kept or reused.
    X[3, 7], X[4, 9] = np.inf, -np.inf
    general = lean.matrix(X[:, ::-1], shuffled)
    kept = X.copy()
    np.testing.assert_array_equal(lean.matrix(X, columns), general)
    np.testing.assert_array_equal(X, kept)
    assert np.isfinite(general).all()
    reused = lean.matrix(X, columns, overwrite=True)
    assert reused is X
    np.testing.assert_array_equal(reused, general)


TEXTS = ["the match ended with a late goal", "new phone chip and battery", "",
         "bake the bread in a hot oven", "goal! what a match", "Phone: CHIP, chip; chip...",
         "café naïve — ünïcödé", "oven hot hot hot bread"]


@pytest.mark.parametrize("batch", [
    TEXTS, TEXTS[:1], ["", None], ["completely unseen vocabulary xyzzy"],
    ["the " * 500 + "goal"], [str(i) for i in range(30)], [float("nan"), 3, "goal"],
])
def test_text_gives_the_featurizers_sparse_matrix(batch):
    featurizer = features.TextFeaturizer().fit(TEXTS * 3)
    lean = compile_featurizer(featurizer)
    assert isinstance(lean, LeanText)
    ours, theirs = lean(batch), featurizer.transform(batch)
    assert sp.issparse(ours) and ours.shape == theirs.shape
    diff = ours - theirs
    assert diff.nnz == 0 or abs(diff).max() < 1e-12


def test_what_cannot_be_compiled_is_not():
    hashed = features.TextFeaturizer(hashing=True, n_hash_features=2**10).fit(TEXTS)
    assert compile_featurizer(hashed) is None
    assert compile_featurizer(features.ImageFeaturizer().fit(np.zeros((2, 4)))) is None
    assert compile_featurizer(None) is None


@pytest.mark.parametrize("cells_per_term", [0, 8, 10**9])  # always sorted, as chosen, tallied
def test_text_counts_terms_alike_by_tally_and_by_sort(monkeypatch, cells_per_term):
    from learning import compiled_text

    monkeypatch.setattr(compiled_text, "TALLY_CELLS_PER_TERM", cells_per_term)
    featurizer = features.TextFeaturizer().fit(TEXTS * 3)
    lean = compile_featurizer(featurizer)
    for batch in (TEXTS, TEXTS[:1], ["", None], ["the " * 500 + "goal"] + TEXTS):
        ours, theirs = lean(batch), featurizer.transform(batch)
        assert ours.shape == theirs.shape
        diff = ours - theirs
        assert diff.nnz == 0 or abs(diff).max() < 1e-12


@pytest.mark.parametrize("cells", [1, 7, 50, 10**6])
def test_counted_is_numpys_unique_with_counts(cells):
    from learning.compiled_text import _counted

    rng = np.random.default_rng(cells)
    for size in (0, 1, 5, 200):
        keys = rng.integers(0, cells, size=size).astype(np.int64)
        found, counts = _counted(keys, cells)
        expected, expected_counts = np.unique(keys, return_counts=True)
        np.testing.assert_array_equal(found, expected)
        np.testing.assert_array_equal(counts, expected_counts)
        assert found.dtype == np.int64
