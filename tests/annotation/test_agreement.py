"""Cohen's and Fleiss' κ (annotation/agreement.py) against hand computation, known examples
and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from annotation.agreement import (
    FleissCell,
    cohen_kappa,
    contingency_table,
    fleiss_kappa,
    fleiss_kappa_from_cells,
)


def test_cohen_kappa_of_the_textbook_example():
    # Wikipedia, "Cohen's kappa": 50 proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15.
    # p_o = 35/50 = 0.7; p_e = 25/50·30/50 + 25/50·20/50 = 0.5; κ = 0.2/0.5 = 0.4.
    assert cohen_kappa([[20, 5], [10, 15]]) == pytest.approx(0.4)


def test_cohen_kappa_of_three_categories_by_hand():
    # n = 20, diagonal 15: p_o = 0.75; rows 6, 9, 5, columns 7, 8, 5:
    # p_e = (42 + 72 + 25) / 400 = 0.3475; κ = 0.4025 / 0.6525.
    table = [[5, 1, 0], [2, 6, 1], [0, 1, 4]]
    assert cohen_kappa(table) == pytest.approx(0.4025 / 0.6525)
    first = [a for a, row in zip("xyz", table) for b, n in zip("xyz", row) for _ in range(n)]
    second = [b for a, row in zip("xyz", table) for b, n in zip("xyz", row) for _ in range(n)]
    assert (contingency_table(first, second, "xyz") == np.array(table)).all()
    assert cohen_kappa(table) == pytest.approx(cohen_kappa_score(first, second))


def test_cohen_kappa_of_perfect_agreement_is_one_and_chance_is_about_zero():
    assert cohen_kappa([[7, 0, 0], [0, 3, 0], [0, 0, 9]]) == 1.0
    rng = np.random.default_rng(0)
    first, second = rng.choice(list("abc"), 20_000), rng.choice(list("abc"), 20_000)
    kappa = cohen_kappa(contingency_table(first, second, "abc"))
    assert abs(kappa) < 0.02
    assert kappa == pytest.approx(cohen_kappa_score(first, second))
    # Always disagreeing on two categories used half the time each: worst possible, -1.
    assert cohen_kappa([[0, 5], [5, 0]]) == pytest.approx(-1.0)


def test_cohen_kappa_is_undefined_for_one_category_and_for_nothing():
    assert cohen_kappa([[12, 0], [0, 0]]) is None  # p_e = 1: 0/0
    assert cohen_kappa([[0, 0], [0, 0]]) is None
    assert cohen_kappa(np.zeros((0, 0))) is None
    # Each rater used one category, not the same one: p_o = p_e = 0, κ = 0 (as sklearn).
    assert cohen_kappa([[0, 4], [0, 0]]) == 0.0
    assert cohen_kappa_score(["a"] * 4, ["b"] * 4) == 0.0
    with pytest.raises(ValueError):
        cohen_kappa([[1, 2, 3]])


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_equals_scikit_learn_on_random_correlated_ratings(seed):
    rng = np.random.default_rng(seed)
    categories = list("abcd")
    first = rng.choice(categories, 300, p=[0.4, 0.3, 0.2, 0.1])
    agree = rng.random(300) < 0.6
    second = np.where(agree, first, rng.choice(categories, 300))
    table = contingency_table(first, second, categories)
    assert cohen_kappa(table) == pytest.approx(cohen_kappa_score(first, second, labels=categories))


WIKIPEDIA_FLEISS = [  # Wikipedia, "Fleiss' kappa": 10 items, 14 raters, 5 categories
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_of_the_textbook_example():
    # P̄ = 0.378, P̄_e = 0.213, κ = 0.210 (rounded as published).
    result = fleiss_kappa(WIKIPEDIA_FLEISS)
    assert result.kappa == pytest.approx(0.210, abs=5e-4)
    assert (result.items, result.ratings) == (10, 140)


def test_fleiss_kappa_by_hand_with_two_and_with_varying_raters():
    # Two raters, items (a,a) (a,b) (b,b) (b,b): P̄ = 3/4; p = 3/8, 5/8, P̄_e = 34/64.
    assert fleiss_kappa([[2, 0], [1, 1], [0, 2], [0, 2]]).kappa == pytest.approx(
        (0.75 - 34 / 64) / (1 - 34 / 64))
    # Three raters agree on one item, two disagree on another: P_1 = 1, P_2 = 0, P̄ = 0.5;
    # p = 4/5, 1/5, P̄_e = 17/25; κ = (0.5 - 0.68) / 0.32.
    result = fleiss_kappa([[3, 0], [1, 1]])
    assert result.kappa == pytest.approx((0.5 - 0.68) / 0.32)
    assert (result.items, result.ratings) == (2, 5)


def test_fleiss_kappa_perfect_chance_and_undefined():
    assert fleiss_kappa([[3, 0, 0], [0, 3, 0], [0, 0, 3]]).kappa == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    ratings = rng.choice(3, size=(5000, 4))
    counts = np.stack([(ratings == j).sum(axis=1) for j in range(3)], axis=1)
    assert abs(fleiss_kappa(counts).kappa) < 0.02
    assert fleiss_kappa([[2, 0], [3, 0]]).kappa is None  # one category only
    assert fleiss_kappa([[1, 0], [0, 1]]) == fleiss_kappa([])  # one rater each: nothing
    assert fleiss_kappa([]).kappa is None and fleiss_kappa([]).items == 0


def _fleiss_per_item(counts: np.ndarray) -> float:
    """The formulas item by item, as written in annotation/agreement.py."""
    n = counts.sum(axis=1).astype(float)
    counts = counts[n >= 2]
    n = n[n >= 2]
    p_items = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    shares = counts.sum(axis=0) / n.sum()
    expected = (shares**2).sum()
    return (p_items.mean() - expected) / (1 - expected)


@pytest.mark.parametrize("seed", range(5))
def test_grouped_cells_give_the_per_item_formula(seed):
    rng = np.random.default_rng(seed)
    raters = rng.integers(1, 6, size=200)  # some items with one rater: left out
    truth = rng.integers(0, 3, size=200)
    counts = np.zeros((200, 3), dtype=int)
    for i, (n, t) in enumerate(zip(raters, truth)):
        for _ in range(n):
            counts[i, t if rng.random() < 0.7 else rng.integers(0, 3)] += 1
    assert fleiss_kappa(counts).kappa == pytest.approx(_fleiss_per_item(counts))
    assert fleiss_kappa(counts).items == int((raters >= 2).sum())


def test_cells_of_single_raters_are_ignored():
    cells = [FleissCell(raters=2, category="a", count=2, items=3),
             FleissCell(raters=2, category="a", count=1, items=1),
             FleissCell(raters=2, category="b", count=1, items=1),
             FleissCell(raters=1, category="b", count=1, items=50)]
    assert fleiss_kappa_from_cells(cells) == fleiss_kappa([[2, 0]] * 3 + [[1, 1]])
