"""Query strategies that pick which samples to label next; the only module importing modAL."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from modAL.batch import ranked_batch
from modAL.uncertainty import (
    classifier_entropy,
    classifier_margin,
    classifier_uncertainty,
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)
from sklearn.base import ClassifierMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import pairwise_distances_argmin

# The strategies a project can choose: the one list. annotation.models.Project.Strategy
# cannot import it (annotation is the lower layer), so tests/learning/test_strategies.py
# checks that its choices agree.
STRATEGIES = ("least_confident", "margin", "entropy", "random", "default")
# Batch strategies on top of the scoring ones: diversity-aware variants of margin.
BATCH_STRATEGIES = (*STRATEGIES, "diverse_margin", "ranked_batch")

# Projects and simulate run ``default`` as a measured mix of diverse margin and random
# picks (learning.adaptive, learning.services.strategy_mix). Without a project's mix,
# select_batch's ``default`` is the fixed mix used before: diverse margin with this share
# of random exploration.
DEFAULT_EXPLORATION = 0.1
DEFAULT_CANDIDATES_PER_PICK = 10
# Diversity is bought with k-means over the top candidates, whose cost grows with the square
# of the picks; a batch asks for at most this many diverse picks and ranks the rest of it by
# score. Annotators work from the head of the queue, and the next retrain reranks it.
DIVERSE_MAX_PICKS = 200
# k-means on more rows than this fits on a random subsample (the cold start on big pools).
KMEANS_MAX_ROWS = 20000


class UnknownStrategy(ValueError):
    """The project names a strategy we do not have."""


def uncertainty_scores(
    estimator: ClassifierMixin, X: np.ndarray, *, strategy: str, seed: int = 0
) -> np.ndarray:
    """Return one score per row of ``X``; a higher score means "ask about this one first".

    ``default`` scores like ``margin``: one sample at a time there is no batch to diversify.
    """
    if strategy == "least_confident":
        return np.asarray(classifier_uncertainty(estimator, X), dtype=np.float64)
    if strategy in ("margin", "default", "diverse_margin", "ranked_batch"):
        # modAL's margin is p1 - p2 (small = uncertain); flip it so that higher = ask first.
        return 1.0 - np.asarray(classifier_margin(estimator, X), dtype=np.float64)
    if strategy == "entropy":
        return np.asarray(classifier_entropy(estimator, X), dtype=np.float64)
    if strategy == "random":
        return np.random.default_rng(seed).random(_rows(X))
    raise UnknownStrategy(f"unknown strategy {strategy!r}; choose from {BATCH_STRATEGIES}")


def select_uncertain(
    estimator: ClassifierMixin, X: np.ndarray, *, n: int, strategy: str, seed: int = 0
) -> np.ndarray:
    """Return the row indices of the ``n`` rows to label next, most informative first."""
    n = min(n, _rows(X))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    samplers = {
        "least_confident": uncertainty_sampling,
        "margin": margin_sampling,
        "default": margin_sampling,
        "entropy": entropy_sampling,
    }
    if strategy == "random":
        return np.random.default_rng(seed).permutation(_rows(X))[:n]
    if strategy not in samplers:
        raise UnknownStrategy(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    indices, _values = samplers[strategy](estimator, X, n_instances=n)
    indices = np.asarray(indices, dtype=np.int64)
    # modAL returns the top n unordered (argpartition); order them most informative first.
    scores = uncertainty_scores(estimator, X[indices], strategy=strategy)
    return indices[np.argsort(-scores, kind="stable")]


def select_batch(
    estimator: ClassifierMixin | None,
    X_pool,
    *,
    n: int,
    strategy: str,
    X_labeled=None,
    seed: int = 0,
) -> np.ndarray:
    """Return the row indices of ``X_pool`` to label next as one batch of up to ``n``.

    ``least_confident``, ``margin`` and ``entropy`` take the top ``n`` scores, which in a
    large batch are often near-duplicates. ``diverse_margin`` clusters the most uncertain
    candidates and takes the one nearest each centre. ``ranked_batch`` is modAL's ranked
    batch (uncertainty traded against distance to ``X_labeled``). ``default`` here, with no
    project's measured mix (``learning.adaptive.select_mix``), is ``diverse_margin`` with a
    fixed ``DEFAULT_EXPLORATION`` share of random picks. Without an estimator every
    strategy but ``random`` falls back to :func:`select_cold_start`.
    """
    n_pool = _rows(X_pool)
    n = min(n, n_pool)
    rng = np.random.default_rng(seed)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if strategy not in BATCH_STRATEGIES:
        raise UnknownStrategy(f"unknown strategy {strategy!r}; choose from {BATCH_STRATEGIES}")
    if strategy == "random":
        return rng.permutation(n_pool)[:n]
    if estimator is None:
        return select_cold_start(X_pool, n=n, seed=seed)
    if strategy in ("least_confident", "margin", "entropy"):
        return select_uncertain(estimator, X_pool, n=n, strategy=strategy, seed=seed)
    scores = uncertainty_scores(estimator, X_pool, strategy=strategy)
    if strategy == "ranked_batch":
        return _ranked_batch(scores, X_pool, X_labeled, n=n)
    if strategy == "diverse_margin":
        return _diverse_top(scores, X_pool, n=n, seed=seed)
    n_random = int(rng.binomial(n, DEFAULT_EXPLORATION))
    if n_random == n:
        return rng.permutation(n_pool)[:n]
    picked = _diverse_top(scores, X_pool, n=n - n_random, seed=seed)
    if n_random:
        rest = np.setdiff1d(np.arange(n_pool), picked)
        picked = np.concatenate([picked, rng.choice(rest, size=n_random, replace=False)])
    return picked


def select_cold_start(X_pool, *, n: int, seed: int = 0) -> np.ndarray:
    """Return ``n`` diverse rows to label before any model exists: those nearest k-means centres.

    Rows nearest each centre of a k-means with ``n`` clusters cover the pool's modes in
    proportion to their mass, which a random draw of a few rows often misses.
    """
    n_pool = _rows(X_pool)
    n = min(n, n_pool)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if n == n_pool:
        return np.arange(n_pool)
    rng = np.random.default_rng(seed)
    fit_rows = X_pool
    if n_pool > KMEANS_MAX_ROWS:
        fit_rows = X_pool[np.sort(rng.choice(n_pool, KMEANS_MAX_ROWS, replace=False))]
    model = MiniBatchKMeans if n_pool > KMEANS_MAX_ROWS else KMeans
    centres = model(n_clusters=n, n_init=3, random_state=seed).fit(fit_rows).cluster_centers_
    return _nearest_distinct(X_pool, centres, order=np.arange(n_pool), rng=rng)


def _diverse_top(scores: np.ndarray, X_pool, *, n: int, seed: int) -> np.ndarray:
    """Cluster the ``n * DEFAULT_CANDIDATES_PER_PICK`` top-scored rows; take one per cluster.

    Weighted by uncertainty, the k-means centres sit among the most informative candidates
    while spreading over distinct regions (Zhdanov 2019, "Diverse mini-batch active learning").
    One pick is the candidate nearest their weighted mean, not the single most uncertain
    row, which is often an outlier: on breast_cancer at batch 1 (5 seeds) that took the
    default from 13 to 12 labels to 95% of full accuracy, where random needs 11.

    At most ``DIVERSE_MAX_PICKS`` picks are clustered, so the cost does not grow with the
    batch size; the rest of a larger batch follows them by score.
    """
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    n_diverse = min(n, DIVERSE_MAX_PICKS)
    candidates = order[: min(len(order), n_diverse * DEFAULT_CANDIDATES_PER_PICK)]
    if len(candidates) <= n_diverse:
        picked = candidates
    else:
        X_cand = X_pool[candidates]
        weights = np.maximum(scores[candidates], 1e-12)
        km = KMeans(n_clusters=n_diverse, n_init=1, random_state=seed).fit(
            X_cand, sample_weight=weights)
        local = _nearest_distinct(X_cand, km.cluster_centers_, order=np.arange(len(candidates)),
                                  rng=np.random.default_rng(seed))
        picked = candidates[local]
        picked = picked[np.argsort(-scores[picked], kind="stable")]
    if n <= len(picked):
        return picked
    rest = order[~np.isin(order, picked)][: n - len(picked)]
    return np.concatenate([picked, rest])


def _nearest_distinct(X, centres, *, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return one distinct row per centre: the nearest, or a random unused row if taken."""
    nearest = pairwise_distances_argmin(centres, X)
    picked: list[int] = []
    seen: set[int] = set()
    for row in nearest.tolist():
        if row in seen:  # two centres share a nearest row; fill the gap below
            continue
        seen.add(row)
        picked.append(row)
    missing = len(centres) - len(picked)
    if missing:
        unused = np.setdiff1d(order, picked)
        picked.extend(rng.choice(unused, size=missing, replace=False).tolist())
    return np.asarray(picked, dtype=np.int64)


class _RankedBatchLearner:
    """What modAL's ranked batch reads from a learner: untransformed input, labeled rows.

    modAL's ``ActiveLearner`` cannot fit with scikit-learn >= 1.8, so we hand ranked batch
    this view of a fitted estimator instead.
    """

    on_transformed = False

    def __init__(self, X_training):
        self.X_training = X_training


def _ranked_batch(scores: np.ndarray, X_pool, X_labeled, *, n: int) -> np.ndarray:
    if sp.issparse(X_pool):
        X_pool = X_pool.toarray()
        X_labeled = X_labeled.toarray() if X_labeled is not None else None
    learner = _RankedBatchLearner(None if X_labeled is None or _rows(X_labeled) == 0
                                  else np.asarray(X_labeled))
    indices, _scores = ranked_batch(learner, unlabeled=np.asarray(X_pool),
                                    uncertainty_scores=scores, n_instances=n,
                                    metric="euclidean", n_jobs=None)
    return np.asarray(indices, dtype=np.int64)


def _rows(X) -> int:
    return X.shape[0]
