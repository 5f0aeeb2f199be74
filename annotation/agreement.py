"""Chance-corrected agreement between annotators: Cohen's κ for two, Fleiss' κ for several.

Both have the form κ = (p_o − p_e) / (1 − p_e): the observed agreement p_o, corrected by
the agreement p_e that raters would reach by chance, given how often each category is
used. κ = 1 is perfect agreement, κ ≈ 0 agreement no better than chance, κ < 0 worse
than chance. When p_e = 1 (every rating is the same single category) κ is 0/0; it is then
undefined and returned as None (pages show "—"), as it is when nothing was rated.

**Cohen's κ** (Cohen 1960): two raters on the same n items; ``table`` is their K × K
contingency table, ``table[i, j]`` the items the first rated i and the second j::

    p_o = Σ_k table[k, k] / n
    p_e = Σ_k (Σ_j table[k, j] / n) · (Σ_i table[i, k] / n)     (each rater's own marginals)

**Fleiss' κ** (Fleiss 1971): N items, item i rated by n_i ≥ 2 raters, k_ij of whom chose
category j::

    P_i = (Σ_j k_ij² − n_i) / (n_i (n_i − 1))    the share of rater pairs agreeing on item i
    P̄   = (1/N) Σ_i P_i
    p_j = Σ_i k_ij / Σ_i n_i                     the share of all ratings in category j
    P̄_e = Σ_j p_j²
    κ   = (P̄ − P̄_e) / (1 − P̄_e)

With the same n for every item this is Fleiss' formula; items with different numbers of
raters (the overlap changed) count equally in P̄, the usual generalization.

The κ's are computed from counts only, so the counting can happen in SQL: Cohen's from a
contingency table, Fleiss' from :class:`FleissCell` rows (how many items with n raters
had k ratings of a category), which a GROUP BY returns in a few rows however many items
there are. Written with numpy; scikit-learn's ``cohen_kappa_score`` cross-checks the
tests (``tests/annotation/test_agreement.py``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# p_e this close to 1 counts as 1: κ is then 0/0, undefined.
_UNDEFINED_TOLERANCE = 1e-12


def _chance_corrected(observed: float, expected: float) -> float | None:
    if expected >= 1.0 - _UNDEFINED_TOLERANCE:
        return None
    return float((observed - expected) / (1.0 - expected))


def cohen_kappa(table: Sequence[Sequence[int]] | np.ndarray) -> float | None:
    """Return Cohen's κ of a square contingency table of two raters, None if undefined."""
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a contingency table is square, not {counts.shape}")
    n = counts.sum()
    if n <= 0:
        return None
    observed = np.trace(counts) / n
    expected = float(np.dot(counts.sum(axis=1) / n, counts.sum(axis=0) / n))
    return _chance_corrected(observed, expected)


def contingency_table(first: Sequence[str], second: Sequence[str],
                      categories: Sequence[str]) -> np.ndarray:
    """Return the K × K table of two raters' ratings of the same items, in ``categories`` order."""
    if len(first) != len(second):
        raise ValueError("both raters must rate the same items")
    index = {category: i for i, category in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)), dtype=np.int64)
    for a, b in zip(first, second):
        table[index[a], index[b]] += 1
    return table


@dataclass(frozen=True)
class FleissCell:
    """``items`` items, each rated by ``raters`` raters, had ``count`` ratings of ``category``."""

    raters: int
    category: str
    count: int
    items: int


@dataclass(frozen=True)
class FleissResult:
    kappa: float | None
    items: int    # N: items with at least two ratings
    ratings: int  # Σ n_i


def fleiss_kappa_from_cells(cells: Iterable[FleissCell]) -> FleissResult:
    """Return Fleiss' κ from grouped counts (see the module's formulas).

    Σ_i P_i = Σ_cells items · count² / (n (n − 1)) − Σ_n N_n / (n − 1), where N_n, the
    items with n raters, is Σ_{cells with n} items · count / n; p_j sums items · count.
    Cells of items with fewer than two raters are left out.
    """
    cells = [cell for cell in cells if cell.raters >= 2 and cell.count > 0 and cell.items > 0]
    if not cells:
        return FleissResult(kappa=None, items=0, ratings=0)
    raters = np.array([cell.raters for cell in cells], dtype=float)
    count = np.array([cell.count for cell in cells], dtype=float)
    items = np.array([cell.items for cell in cells], dtype=float)
    ratings = items * count
    items_by_raters: dict[float, float] = {}
    for n, r in zip(raters, ratings):
        items_by_raters[n] = items_by_raters.get(n, 0.0) + r / n
    n_items = sum(items_by_raters.values())
    p_sum = float(np.sum(items * count**2 / (raters * (raters - 1)))) - sum(
        n_n / (n - 1) for n, n_n in items_by_raters.items())
    total = ratings.sum()
    by_category: dict[str, float] = {}
    for cell, r in zip(cells, ratings):
        by_category[cell.category] = by_category.get(cell.category, 0.0) + r
    shares = np.array(list(by_category.values())) / total
    kappa = _chance_corrected(p_sum / n_items, float(np.sum(shares**2)))
    return FleissResult(kappa=kappa, items=int(round(n_items)), ratings=int(total))


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> FleissResult:
    """Return Fleiss' κ of an N × K matrix: ``counts[i, j]`` raters put item i in category j."""
    matrix = np.asarray(counts, dtype=np.int64)
    grouped: dict[tuple[int, int, int], int] = {}
    for row in matrix:
        n = int(row.sum())
        for j, k in enumerate(row):
            if k:
                grouped[(n, j, int(k))] = grouped.get((n, j, int(k)), 0) + 1
    return fleiss_kappa_from_cells(
        FleissCell(raters=n, category=str(j), count=k, items=m) for (n, j, k), m in grouped.items()
    )
