"""bench/queue_ranker.py's bootstrap promotion rule: how often a new version's macro-F1 falls
below the served one's over resamples of the held-out rows."""
import numpy as np
from sklearn.metrics import f1_score

from bench import queue_ranker


def _predictions(right_share: float, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    wrong = np.where(y == "a", "b", "a")
    return np.where(rng.random(len(y)) < right_share, y, wrong)


def test_the_same_predictions_are_never_worse():
    y = np.asarray(list("abcabcabca"))
    assert queue_ranker.worse_share(y, y.copy(), y.copy(), ["a", "b", "c"]) == 0.0


def test_a_clearly_worse_version_is_worse_in_almost_every_resample_and_not_the_other_way():
    rng = np.random.default_rng(3)
    y = rng.choice(np.asarray(list("abc")), size=200)
    good, bad = _predictions(0.9, y, rng), _predictions(0.5, y, rng)
    present = sorted(set(y))
    assert (f1_score(y, bad, labels=present, average="macro")
            < f1_score(y, good, labels=present, average="macro"))
    assert queue_ranker.worse_share(y, bad, good, present) > 0.99
    assert queue_ranker.worse_share(y, good, bad, present) < 0.01


def test_on_few_rows_a_small_difference_is_a_coin_flip():
    rng = np.random.default_rng(4)
    y = rng.choice(np.asarray(list("ab")), size=30)
    new, served = y.copy(), y.copy()
    new[:3] = np.where(y[:3] == "a", "b", "a")  # new wrong on rows 0-2, served on rows 3-4
    served[3:5] = np.where(y[3:5] == "a", "b", "a")
    share = queue_ranker.worse_share(y, new, served, ["a", "b"])
    assert 0.4 < share < 0.9
