"""Every query strategy runs on the pinned modAL / scikit-learn / numpy versions."""
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from learning import strategies


@pytest.fixture(scope="module")
def fitted():
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    return LogisticRegression(max_iter=500).fit(X[:100], y[:100]), X[100:]


def test_projects_offer_exactly_the_strategies_learning_implements():
    """annotation may not import learning, so its choices repeat the one list; keep them equal."""
    from annotation.models import Project
    from learning import simulation

    assert tuple(Project.Strategy.values) == strategies.STRATEGIES
    assert sorted(simulation.DEFAULT_STRATEGIES) == sorted(strategies.STRATEGIES)


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_uncertainty_scores_one_finite_score_per_row(fitted, strategy):
    estimator, X = fitted
    scores = strategies.uncertainty_scores(estimator, X, strategy=strategy)
    assert scores.shape == (len(X),)
    assert np.isfinite(scores).all()


def test_least_confident_score_is_one_minus_top_probability(fitted):
    estimator, X = fitted
    expected = 1 - estimator.predict_proba(X).max(axis=1)
    np.testing.assert_allclose(
        strategies.uncertainty_scores(estimator, X, strategy="least_confident"), expected
    )


def test_margin_score_is_highest_where_top_two_classes_are_closest(fitted):
    estimator, X = fitted
    proba = np.sort(estimator.predict_proba(X), axis=1)
    closest = int(np.argmin(proba[:, -1] - proba[:, -2]))
    scores = strategies.uncertainty_scores(estimator, X, strategy="margin")
    assert int(np.argmax(scores)) == closest


@pytest.mark.parametrize("strategy", ["least_confident", "margin", "entropy"])
def test_select_uncertain_returns_top_n_most_informative_first(fitted, strategy):
    estimator, X = fitted
    picked = strategies.select_uncertain(estimator, X, n=10, strategy=strategy)
    scores = strategies.uncertainty_scores(estimator, X, strategy=strategy)
    assert len(set(picked.tolist())) == 10
    assert np.all(np.diff(scores[picked]) <= 1e-12)
    assert scores[picked].min() >= np.sort(scores)[-10] - 1e-12


def test_select_random_is_reproducible_and_distinct(fitted):
    estimator, X = fitted
    a = strategies.select_uncertain(estimator, X, n=15, strategy="random", seed=3)
    b = strategies.select_uncertain(estimator, X, n=15, strategy="random", seed=3)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 15


def test_unknown_strategy_is_refused(fitted):
    estimator, X = fitted
    with pytest.raises(strategies.UnknownStrategy):
        strategies.uncertainty_scores(estimator, X, strategy="vibes")


@pytest.fixture(scope="module")
def blobs():
    """Ten tight blobs of near-duplicates; the model is unsure about all of them alike."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=80, centers=10, cluster_std=0.05, n_features=4,
                      random_state=0)
    binary = (y % 2).astype(int)
    # A model that barely separates anything: every row is about equally uncertain.
    return LogisticRegression(C=1e-4).fit(X, binary), X, y


@pytest.mark.parametrize("strategy", strategies.BATCH_STRATEGIES)
def test_select_batch_returns_n_distinct_rows(fitted, strategy):
    estimator, X = fitted
    picked = strategies.select_batch(estimator, X, n=25, strategy=strategy, X_labeled=X[:5],
                                     seed=1)
    assert len(picked) == 25 and len(set(picked.tolist())) == 25
    assert picked.min() >= 0 and picked.max() < len(X)


@pytest.mark.parametrize("strategy", ["default", "diverse_margin"])
def test_diverse_batches_spread_over_blobs_where_top_n_piles_into_few(blobs, strategy):
    estimator, X, y = blobs
    plain = strategies.select_batch(estimator, X, n=10, strategy="margin")
    diverse = strategies.select_batch(estimator, X, n=10, strategy=strategy, seed=0)
    assert len(set(y[diverse])) >= 8
    assert len(set(y[diverse])) > len(set(y[plain]))


def test_cold_start_picks_one_row_per_blob_without_a_model(blobs):
    _estimator, X, y = blobs
    picked = strategies.select_cold_start(X, n=10, seed=0)
    assert sorted(y[picked].tolist()) == list(range(10))
    assert strategies.select_batch(None, X, n=10, strategy="margin", seed=0).tolist() == \
        picked.tolist()


def test_select_batch_handles_small_pools_and_empty_requests(fitted):
    estimator, X = fitted
    assert len(strategies.select_batch(estimator, X[:3], n=10, strategy="default")) == 3
    assert len(strategies.select_batch(estimator, X, n=0, strategy="default")) == 0
    assert len(strategies.select_cold_start(X[:4], n=10)) == 4
    with pytest.raises(strategies.UnknownStrategy):
        strategies.select_batch(estimator, X, n=3, strategy="vibes")


def test_default_mixes_in_random_exploration(fitted):
    estimator, X = fitted
    margin_top = set(strategies.select_uncertain(estimator, X, n=100, strategy="margin").tolist())
    outside = 0
    for seed in range(20):
        picked = strategies.select_batch(estimator, X, n=10, strategy="default", seed=seed)
        outside += len(set(picked.tolist()) - margin_top)
    assert 0 < outside < 60  # about 10% of 200 picks come from anywhere in the pool


def test_a_huge_batch_clusters_a_bounded_head_and_ranks_the_rest_by_score(monkeypatch):
    """Issue 17: k-means over batch_size x 10 candidates kept a worker busy for minutes at
    batch size 100,000. The diverse head is bounded; the rest follows by score, no repeats."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 4))
    estimator = LogisticRegression(max_iter=200).fit(X[:200], (X[:200, 0] > 0).astype(int))
    clusters = []
    real_kmeans = strategies.KMeans

    def recording_kmeans(*args, n_clusters, **kwargs):
        clusters.append(n_clusters)
        return real_kmeans(*args, n_clusters=n_clusters, **kwargs)

    monkeypatch.setattr(strategies, "KMeans", recording_kmeans)
    n = 5000
    picked = strategies.select_batch(estimator, X, n=n, strategy="diverse_margin", seed=0)
    assert clusters == [strategies.DIVERSE_MAX_PICKS]
    assert len(picked) == n and len(set(picked.tolist())) == n
    scores = strategies.uncertainty_scores(estimator, X, strategy="diverse_margin")
    tail = picked[strategies.DIVERSE_MAX_PICKS:]
    assert np.all(np.diff(scores[tail]) <= 0), "after the diverse head, picks follow the score"
    head = set(picked[: strategies.DIVERSE_MAX_PICKS].tolist())
    unpicked = np.setdiff1d(np.arange(len(X)), picked)
    # Every row left out scores no higher than the tail's lowest: the tail is the top rest.
    assert scores[unpicked].max() <= scores[tail].min() + 1e-12
    assert head.isdisjoint(tail.tolist())
