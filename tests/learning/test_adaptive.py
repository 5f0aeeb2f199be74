"""The adaptive default: it measures its arms, shifts toward the one that gains, keeps its
state in the database across retrains, and simulate replays it."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from learning import adaptive, simulation


def _replay(pool, test, *, seed, budget=150, C=1.0):
    """Replay the adaptive default; return the margin share after each measurement."""
    (X, y), (X_test, y_test) = pool, test
    trace = []
    simulation._replay_adaptive(X, y, X_test, y_test,
                                estimator=LogisticRegression(C=C, max_iter=500),
                                seed=seed, batch_size=10, budget=budget, seed_labels=10,
                                trace=trace)
    return [point["margin"] for point in trace]


def _linear_case(seed):
    """Uncertainty clearly wins: noise-free classes on either side of a hyperplane in 10
    dimensions; labels near the boundary place it, labels far from it teach little."""
    rng = np.random.default_rng(seed)

    def rows(n):
        X = rng.normal(size=(n, 10))
        return X, np.where(X.sum(axis=1) > 0, "b", "a")

    return rows(1200), rows(600)


def _junk_case(seed):
    """Uncertainty clearly loses: 30% of the pool is junk (one far blob, labeled a or b at a
    coin flip), on which the model stays most uncertain; the classes that matter, c and d,
    overlap in 30 dimensions and need many labels, which only random picks bring."""
    rng = np.random.default_rng(seed)

    def rows(n, junk):
        kinds = np.where(rng.random(n) < junk, 0, rng.integers(1, 3, n))
        X = rng.normal(size=(n, 30)) * 0.5
        X[kinds == 0, 0] += 4.0
        X[kinds == 1, 1:] += 0.08
        X[kinds == 2, 1:] -= 0.08
        coin = np.where(rng.random(n) < 0.5, "a", "b")
        return X, np.where(kinds == 0, coin, np.where(kinds == 1, "c", "d"))

    return rows(1500, 0.3), rows(600, 0.0)  # held-out labels are of real samples only


def test_the_mix_shifts_toward_margin_where_uncertainty_clearly_wins():
    shares = [_replay(*_linear_case(s), seed=s, C=100.0, budget=250) for s in range(3)]
    late = np.mean([run[-5:] for run in shares])
    # From the start's 0.5; the measurement is noisy (a project's few held-out labels), so
    # a single run may wander: the mean of three must have moved.
    assert late > 0.6, shares


def test_the_mix_shifts_toward_random_where_uncertainty_clearly_loses():
    shares = [_replay(*_junk_case(s), seed=s) for s in range(3)]
    late = np.mean([run[-5:] for run in shares])
    assert late < 0.4, shares


def test_measure_credits_the_arm_whose_picks_raise_held_out_accuracy():
    """Margin's refit is right on 9 of 10 held-out rows, random's on 5: margin's share rises
    with every such batch, and the gains per label are what the refits measured."""
    def score_with(rows):
        right = 9 if rows[0] < 100 else 5  # margin's picks are rows < 100 here
        return np.asarray([1.0] * right + [0.0] * (10 - right))

    picks = {"margin": np.arange(0, 20), "random": np.arange(100, 105)}
    mix = adaptive.Mix()
    shares = []
    for _ in range(4):
        mix = adaptive.measure(mix, picks=picks, base=np.full(10, 0.0) + (np.arange(10) < 4),
                               score_with=score_with, labels=50, rng=np.random.default_rng(0))
        shares.append(mix.shares["margin"])
    assert shares == sorted(shares) and shares[-1] > 0.85
    assert mix.history[-1]["k"] == 5  # as many picks of each arm: the smaller arm's count
    assert mix.gains["margin"] == pytest.approx((0.9 - 0.4) / 5)
    assert mix.gains["random"] == pytest.approx((0.5 - 0.4) / 5)
    assert mix.winner == "margin"
    # No random picks in the window: nothing to compare, the mix stays.
    assert adaptive.measure(mix, picks={"margin": picks["margin"], "random": np.empty(0)},
                            base=np.ones(10), score_with=score_with, labels=60,
                            rng=np.random.default_rng(0)) is mix


def test_gains_are_a_discounted_mean_in_which_the_first_measurement_does_not_linger():
    """Seen in the demo: a first measurement of -2 points per label (both arms), then four of
    about +1 for margin, and the page still showed margin's gain as negative; the gains
    were an average that started at the first measurement and moved 15% a step."""
    def measured(gain_margin, gain_random):
        def score_with(rows):
            gain = gain_margin if rows[0] < 100 else gain_random
            return np.asarray([1.0] * (4 + gain) + [0.0] * (6 - gain))
        return score_with

    picks = {"margin": np.arange(0, 2), "random": np.arange(100, 102)}  # k = 2
    base = (np.arange(10) < 4).astype(float)  # 4 of 10 right
    mix = adaptive.Mix()
    series = [(-2, -2), (2, 1), (2, 1), (2, 0), (2, 1)]  # rows gained per 2 picks, of 10
    for gain_margin, gain_random in series:
        mix = adaptive.measure(mix, picks=picks, base=base,
                               score_with=measured(gain_margin, gain_random), labels=50,
                               rng=np.random.default_rng(0))
    weights = [adaptive.DECAY ** age for age in range(len(series) - 1, -1, -1)]
    for i, arm in enumerate(adaptive.ARMS):
        per_label = [pair[i] / 10 / 2 for pair in series]
        expected = sum(w * g for w, g in zip(weights, per_label)) / sum(weights)
        assert mix.gains[arm] == pytest.approx(expected)
    assert mix.gains["margin"] > 0.05

    # A mix stored before the sums were kept: its gains count as one measurement's.
    old = adaptive.Mix(gains={"margin": -0.1, "random": 0.0}, measurements=3)
    new = adaptive.measure(old, picks=picks, base=base, score_with=measured(2, 0), labels=60,
                           rng=np.random.default_rng(0))
    assert new.gains["margin"] == pytest.approx((adaptive.DECAY * -0.1 + 0.1)
                                                / (adaptive.DECAY + 1.0))


def test_test_scores_are_the_margin_of_each_held_out_label():
    """Probability of the label minus the best other label's: positive exactly where the
    prediction is right, and moving with every refit where 0/1 correctness rarely does; a
    label the model never saw scores minus the best probability, a model without
    probabilities 0/1."""
    X = np.asarray([[-2.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 4.0]])
    model = LogisticRegression().fit(X, ["a", "a", "b", "b", "c", "c"])
    rows = np.asarray([[-3.0, 0.0], [0.5, 0.0], [0.5, 0.0], [0.0, 5.0]])
    scores = adaptive.test_scores(model, rows, ["a", "b", "a", "z"])
    proba = model.predict_proba(rows)
    assert scores == pytest.approx([
        proba[0, 0] - max(proba[0, 1], proba[0, 2]), proba[1, 1] - max(proba[1, 0], proba[1, 2]),
        proba[2, 0] - max(proba[2, 1], proba[2, 2]), -proba[3].max()])
    assert scores[0] > 0 and 0 < scores[1] < 1 and scores[2] < 0  # right, right, wrong

    class Hard:
        def predict(self, X):
            return np.asarray(["a"] * len(X))

    assert adaptive.test_scores(Hard(), X[:2], ["a", "b"]).tolist() == [1.0, 0.0]


def test_shares_stay_within_the_floor_and_start_at_the_start_shares():
    assert adaptive.shares_from(0.0) == pytest.approx(adaptive.START_SHARES, abs=1e-3)
    assert adaptive.shares_from(50.0)["random"] == pytest.approx(adaptive.SHARE_FLOOR)
    assert adaptive.shares_from(-50.0)["margin"] == pytest.approx(adaptive.SHARE_FLOOR)
    mix = adaptive.Mix.from_json(adaptive.Mix(z=1.5, measurements=3).to_json())
    assert mix.z == 1.5 and mix.measurements == 3


def test_select_mix_splits_a_batch_by_the_shares_and_interleaves_the_arms():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    model = LogisticRegression().fit(X[:40], (X[:40, 0] > 0).astype(int))
    mix = adaptive.Mix(shares={"margin": 0.6, "random": 0.4})
    random_rows = np.arange(300, 400)
    picked, arms = adaptive.select_mix(model, X, n=10, mix=mix, seed=1, random_rows=random_rows)
    assert len(set(picked.tolist())) == 10 and arms.count("margin") == 6
    assert all(row >= 300 for row, arm in zip(picked, arms) if arm == "random")
    assert arms[:2] != ["margin", "margin"] or arms[2] == "random"  # not all margin first
    picked, arms = adaptive.select_mix(None, X, n=5, mix=mix, seed=1)
    assert arms == ["random"] * 5  # no model: nothing to be uncertain about


def test_simulate_runs_the_adaptive_default(monkeypatch):
    calls = []
    measure = adaptive.measure
    monkeypatch.setattr(adaptive, "measure", lambda mix, **kw: calls.append(kw["labels"])
                        or measure(mix, **kw))
    result = simulation.simulate(simulation.load_builtin("iris"), strategies_=["default"],
                                 batch_size=10, budget=60, seeds=1)
    assert [n for n, _acc in result["strategies"]["default"]["curve"]] == [10, 20, 30, 40, 50, 60]
    assert calls and calls == sorted(calls)


def test_generated_sets_are_fixed_by_their_seed():
    a = simulation.load_builtin("imbalanced")
    b = simulation.load_builtin("imbalanced")
    assert a.X.equals(b.X) and (a.y == b.y).all()
    shares = np.unique(a.y, return_counts=True)[1] / len(a.y)
    assert shares.max() > 0.45 and shares.min() < 0.12  # imbalanced
    assert simulation.load_builtin("overlap").X.shape == (2000, 56)
