"""Is a new version worse than the served one on the held-out labels? ORM-free.

Both versions score every held-out label by their margin on it (``adaptive.test_scores``:
the probability of the label minus the highest other, positive exactly where the version
predicts it). The paired differences, new minus served, give a z; the new version is
refused only when it is worse with 90% confidence (z below ``WORSE_Z``). Paired margins
move on every row, so they tell a real loss (a version trained on a careless annotator's
labels) from the noise of a few dozen held-out labels far sooner than macro-F1 does, which
refused most new versions on noise alone (bench/queue_ranker.py --rules; README,
"The promotion check").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Refuse a new version when the paired test says it is worse with this confidence.
WORSE_CONFIDENCE = 0.9
WORSE_Z = NormalDist().inv_cdf(1.0 - WORSE_CONFIDENCE)


@dataclass(frozen=True)
class Verdict:
    rows: int
    mean: float  # mean margin difference per held-out label, new minus served
    z: float

    @property
    def worse(self) -> bool:
        return self.z < WORSE_Z


def paired_verdict(new_scores, served_scores) -> Verdict:
    """Compare two versions' per-row scores on the same held-out rows."""
    differences = np.asarray(new_scores, dtype=float) - np.asarray(served_scores, dtype=float)
    n = len(differences)
    if n == 0:
        return Verdict(rows=0, mean=0.0, z=0.0)
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1)) if n > 1 else 0.0
    if sd > 0:
        z = mean / (sd / math.sqrt(n))
    elif n > 1 and mean != 0:  # every row moved alike: as sure as the rows can make it
        z = math.copysign(math.inf, mean)
    else:
        z = 0.0
    return Verdict(rows=n, mean=mean, z=z)
