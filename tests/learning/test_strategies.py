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
