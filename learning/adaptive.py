"""The adaptive default strategy: a measured mix of uncertainty ("margin") and random picks.

ORM-free; the live service (``learning.services.strategy_mix``) and ``simulate`` both use it.

Each batch is split between two arms, ``margin`` (diverse margin sampling) and ``random``,
by the project's current shares. When the batch's labels have arrived, the arms are
compared on the held-out test labels: from the labels before the batch (the base), one
model is refitted with ``k`` of the margin picks added and one with ``k`` of the random
picks (``k`` = the smaller arm's picks, so both add as many labels), and the per-label
change of test accuracy of each is that arm's gain. The arms are compared row by row on
the same base and the same test labels, by the refits' margin on each label (probability
of the label minus the best other's, ``test_scores``): a paired comparison removes most of
the noise the test set's size would add, and the margin, unlike 0/1 correctness, moves on
every row (measured in bench/al_efficiency.py; README, "The default strategy").

The paired difference (margin minus random), as a z, is averaged over batches with a
discount, so older evidence fades as the model grows, and the margin share is the
probability that margin's mean advantage is positive under a normal approximation,
kept within ``[SHARE_FLOOR, 1 - SHARE_FLOOR]``. With no evidence the shares are
``START_SHARES``: half random while nothing is known (a weak model's uncertainty misleads
most), then moving toward whichever arm measurably gains more per label.

Related work: Hsu & Lin, "Active learning by learning" (AAAI 2015) treat strategies as
bandit arms rewarded by importance-weighted accuracy; here the reward is measured directly,
by refits on the held-out labels, which a project has anyway.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from learning import strategies

def _erfinv(y: float) -> float:
    """Inverse error function (by bisection; called once, at import)."""
    lo, hi = -6.0, 6.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if math.erf(mid) < y else (lo, mid)
    return (lo + hi) / 2.0


ARMS = ("margin", "random")
# Neither arm's share goes below this: random keeps the model honest, margin keeps being
# measured (and so can win back the queue when the model has grown).
SHARE_FLOOR = 0.1
START_SHARES = {"margin": 0.5, "random": 0.5}
# Where the evidence (a z) starts: START_SHARES's margin share is where it lands at z = 0.
Z_OFFSET = -math.sqrt(2.0) * _erfinv(
    2.0 * (START_SHARES["margin"] - SHARE_FLOOR) / (1.0 - 2.0 * SHARE_FLOOR) - 1.0)
# Weight of a measurement one batch older than the newest.
DECAY = 0.85
# Arms are compared on the picks among the newest this share of labels, so that what
# worked for a weak model fades as the model grows.
WINDOW = 0.5
# Measurements kept for the project page.
HISTORY = 20


@dataclass
class Mix:
    """One project's mix: the shares and the evidence behind them.

    ``z`` is a discounted mean of the measured advantage of margin over random, in standard
    errors of the paired test; ``gains`` the discounted mean per-label test-accuracy gain
    of each arm (what leaving ``k`` of its picks out cost, divided by ``k``): the
    measurements' gains weighted ``DECAY ** age`` over the sum of those weights
    (``gain_sums`` over ``weight``), so the newest counts most and the first does not
    linger.
    """

    shares: dict[str, float] = field(default_factory=lambda: dict(START_SHARES))
    z: float = 0.0
    z_sum: float = 0.0
    weight2: float = 0.0
    gains: dict[str, float] = field(default_factory=lambda: {arm: 0.0 for arm in ARMS})
    gain_sums: dict[str, float] = field(default_factory=lambda: {arm: 0.0 for arm in ARMS})
    weight: float = 0.0
    measurements: int = 0
    history: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> Mix:
        if not data:
            return cls()
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    @property
    def winner(self) -> str | None:
        if self.measurements == 0:
            return None
        return max(self.shares, key=self.shares.get)


def shares_from(z: float) -> dict[str, float]:
    """Margin's share: the normal probability of ``z - Z_OFFSET``, within the floors; so
    ``START_SHARES`` without evidence, and margin takes the most only on evidence for it."""
    p = 0.5 * (1.0 + math.erf((z - Z_OFFSET) / math.sqrt(2.0)))
    margin = SHARE_FLOOR + (1.0 - 2.0 * SHARE_FLOOR) * p
    return {"margin": round(margin, 4), "random": round(1.0 - margin, 4)}


def allocate(n: int, shares: dict[str, float], rng: np.random.Generator) -> dict[str, int]:
    """Split ``n`` picks between the arms: floor of each share, the remainder drawn."""
    n_random = n * shares.get("random", 0.0)
    whole = int(math.floor(n_random))
    n_random = whole + int(rng.random() < n_random - whole)
    return {"margin": n - n_random, "random": n_random}


def select_mix(
    estimator, X_pool, *, n: int, mix: Mix, seed: int = 0,
    random_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Return (row indices, the arm of each) for a batch of up to ``n`` rows of ``X_pool``.

    ``margin`` picks are ``diverse_margin``'s; ``random`` picks are drawn uniformly from
    ``random_rows`` (default: every row) not picked by margin. The picks are interleaved in
    proportion, so whoever labels only the head of the batch still labels both arms.
    """
    n = min(n, X_pool.shape[0])
    rng = np.random.default_rng(seed)
    if n <= 0:
        return np.empty(0, dtype=np.int64), []
    counts = allocate(n, mix.shares, rng)
    if estimator is None:  # no model: nothing to be uncertain about
        counts = {"margin": 0, "random": n}
    margin = np.empty(0, dtype=np.int64)
    if counts["margin"]:
        margin = strategies.select_batch(estimator, X_pool, n=counts["margin"],
                                         strategy="diverse_margin", seed=seed)
    rows = np.arange(X_pool.shape[0]) if random_rows is None else np.asarray(random_rows)
    free = np.setdiff1d(rows, margin)
    if len(free) < counts["random"]:  # too few random candidates: fill from the rest
        free = np.setdiff1d(np.arange(X_pool.shape[0]), margin)
    random_ = rng.choice(free, size=min(counts["random"], len(free)), replace=False)
    picked = _interleave({"margin": margin, "random": np.asarray(random_, dtype=np.int64)})
    return np.asarray([row for row, _arm in picked], dtype=np.int64), [a for _r, a in picked]


def _interleave(by_arm: dict[str, np.ndarray]) -> list[tuple[int, str]]:
    """Merge the arms' picks so that each arm's k-th pick sits near k / its count."""
    keyed = []
    for arm, rows in by_arm.items():
        for k, row in enumerate(rows.tolist()):
            keyed.append(((k + 0.5) / len(rows), arm, row))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [(row, arm) for _pos, arm, row in keyed]


def test_scores(model, X, y) -> np.ndarray:
    """One score per held-out row: the model's margin on its label, in [-1, 1].

    That is the probability it gives the label minus the highest probability of another
    label: positive exactly where it predicts the label. Two refits a few labels apart
    rarely change a prediction on a few dozen held-out rows, so 0/1 correctness leaves
    most paired differences at 0; the margin moves on every row and tells the arms apart
    with far fewer rows. (The probability of the label alone also rewards picks that only
    move probability between wrong classes, such as labels of junk far from every held-out
    row.) A model without probabilities scores 1.0 where it predicts the label, else 0.0.
    """
    y = np.asarray(y)
    if not hasattr(model, "predict_proba"):
        return (np.asarray(model.predict(X)) == y).astype(float)
    proba = np.asarray(model.predict_proba(X), dtype=float)
    column = {label: i for i, label in enumerate(np.asarray(model.classes_).tolist())}
    where = np.asarray([column.get(label, -1) for label in y.tolist()], dtype=np.int64)
    rows, known = np.arange(len(y)), where >= 0
    p_label = np.where(known, proba[rows, np.maximum(where, 0)], 0.0)
    others = proba.copy()
    others[rows[known], where[known]] = -np.inf
    return p_label - others.max(axis=1)


def window(order: np.ndarray) -> np.ndarray:
    """The newest ``WINDOW`` share of labels, given their indices in the order labeled."""
    return order[int(len(order) * (1.0 - WINDOW)):]


def measure(
    mix: Mix, *, picks: dict[str, np.ndarray], base: np.ndarray,
    score_with: Callable[[np.ndarray], np.ndarray], labels: int, rng: np.random.Generator,
) -> Mix:
    """Compare the arms on the window's labels; return the updated mix (``mix`` unchanged).

    ``picks`` maps each arm to the indices (whatever ``score_with`` takes) of its labels in
    the window; ``score_with(rows)`` refits on the labels before the window plus ``rows``
    and returns ``test_scores`` on the held-out labels; ``base`` is the same without
    ``rows``. ``k`` picks of each arm are added (the smaller arm's count), so both refits
    have as many labels. Returns ``mix`` as is when an arm has no picks or there is no
    held-out label.
    """
    k = min(len(picks.get(arm, ())) for arm in ARMS)
    if k == 0 or len(base) == 0:
        return mix
    with_ = {arm: score_with(np.sort(rng.choice(np.asarray(picks[arm]), size=k, replace=False)))
             for arm in ARMS}
    # Paired per held-out row: how much more sure of the label margin's refit is.
    paired = with_["margin"] - with_["random"]
    n = len(paired)
    sd = float(paired.std(ddof=1)) if n > 1 else 0.0
    z = float(paired.mean()) / (sd / math.sqrt(n)) if sd > 0 else 0.0
    # Gains are of accuracy (a margin above 0 is a right prediction); the z above is of
    # the margins, which differ on every row.
    right = float((np.asarray(base) > 0).mean())
    gains = {arm: (float((with_[arm] > 0).mean()) - right) / k for arm in ARMS}
    new = Mix.from_json(mix.to_json())
    new.measurements = mix.measurements + 1
    # The evidence: a discounted sum of the measurements' z over the root of the summed
    # squared weights, which is again a z (standard normal when the arms are equal).
    new.z_sum = DECAY * mix.z_sum + z
    new.weight2 = DECAY ** 2 * mix.weight2 + 1.0
    new.z = new.z_sum / math.sqrt(new.weight2)
    # A mix stored before gain_sums existed carries its gains as one measurement's.
    old_sums, old_weight = ((mix.gain_sums, mix.weight) if mix.weight > 0 or not mix.measurements
                            else (mix.gains, 1.0))
    new.weight = DECAY * old_weight + 1.0
    new.gain_sums = {arm: DECAY * old_sums.get(arm, 0.0) + gains[arm] for arm in ARMS}
    new.gains = {arm: new.gain_sums[arm] / new.weight for arm in ARMS}
    new.shares = shares_from(new.z)
    new.history = (mix.history + [{
        "labels": int(labels), "k": int(k), "test": int(n), "z": round(z, 3),
        "gain": {arm: round(gains[arm], 6) for arm in ARMS}, "shares": new.shares,
    }])[-HISTORY:]
    return new
