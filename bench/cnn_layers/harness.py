"""Scratch harness: the bench's protocol on cached embeddings of the 5,000 MNIST digits.

Same split as learning.simulation.simulate (30% stratified test, random_state 0), featurizer
fitted on the pool, the product's image estimator (logreg, no scaling) with C overridable.
  screen: random labels at fixed counts (cheap proxy), many seeds
  al:     learning.simulation._replay_adaptive (the product's default strategy), batch 10
"""
import os
DIR = os.environ.get("CNN_LAYERS_DIR", "var/bench/cnn_layers")

import json
import sys
import time

import numpy as np
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler, normalize
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from learning import simulation  # noqa: E402
from learning.estimators import build_estimator  # noqa: E402

DATA = np.load(DIR + "/mnist.npz")
Y = DATA["y"].astype(str)
POOL, TEST = train_test_split(np.arange(len(Y)), test_size=0.3, stratify=Y, random_state=0)
_emb = {}


def embeddings(source: str) -> np.ndarray:
    """'pixels' or 'VARIANT:LAYER' (e.g. 224-0-0:head_gap)."""
    if source == "pixels":
        return DATA["X"].astype(np.float32)
    variant, layer = source.split(":")
    if variant not in _emb:
        _emb[variant] = np.load(f"{DIR}/emb-{variant}.npz")
    return _emb[variant][layer].astype(np.float32)


def transform(E, *, scale=True, pca=50, whiten=False, l2=False, mult=1.0, sqrt=False):
    """Fit on the pool rows, return (X_pool, X_test)."""
    P, T = E[POOL], E[TEST]
    if sqrt:  # signed square root (power normalisation)
        P, T = np.sign(P) * np.sqrt(np.abs(P)), np.sign(T) * np.sqrt(np.abs(T))
    if scale:
        s = StandardScaler().fit(P)
        P, T = s.transform(P), s.transform(T)
    if pca:
        p = PCA(n_components=min(pca, *P.shape), whiten=whiten, random_state=0).fit(P)
        P, T = p.transform(P), p.transform(T)
    if l2:
        P, T = normalize(P), normalize(T)
    return (P * mult).astype(np.float64), (T * mult).astype(np.float64)


def estimator(C=1.0):
    return build_estimator({"params": {"C": C}}, kind="image")


def screen(Xp, Xt, *, C=1.0, counts=(100, 250, 500), seeds=10):
    y_pool, y_test = Y[POOL], Y[TEST]
    est = estimator(C)
    out = {}
    with threadpool_limits(1):
        for n in counts:
            accs = []
            for seed in range(seeds):
                rows = np.random.default_rng(seed).choice(len(POOL), n, replace=False)
                model = clone(est).fit(Xp[rows], y_pool[rows])
                accs.append(accuracy_score(y_test, model.predict(Xt)))
            out[n] = float(np.mean(accs))
    return out


def al(Xp, Xt, *, C=1.0, seeds=5, budget=500, seed0=0):
    y_pool, y_test = Y[POOL], Y[TEST]
    curves = [simulation._replay_adaptive(Xp, y_pool, Xt, y_test, estimator=estimator(C),
                                          seed=s, batch_size=10, budget=budget,
                                          seed_labels=simulation.SEED_LABELS)
              for s in range(seed0, seed0 + seeds)]
    counts = [n for n, _a, _f in curves[0]]
    mean = np.mean([[a for _n, a, _f in c] for c in curves], axis=0)
    per_seed = [[a for _n, a, _f in c] for c in curves]
    return counts, mean, per_seed


def at(counts, mean, n):
    return float(mean[[i for i, c in enumerate(counts) if c <= n][-1]])


def first_reaching(counts, mean, acc):
    return next((c for c, a in zip(counts, mean) if a >= acc), None)


if __name__ == "__main__":
    # usage: evalh.py screen|al SOURCE JSON_TRANSFORM_PARAMS C [seeds] [budget]
    mode, source, params, C = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
    seeds = int(sys.argv[5]) if len(sys.argv) > 5 else (10 if mode == "screen" else 5)
    t0 = time.perf_counter()
    Xp, Xt = transform(embeddings(source), **params)
    if mode == "screen":
        res = screen(Xp, Xt, C=C, seeds=seeds)
        print(json.dumps({"source": source, "params": params, "C": C, "dims": Xp.shape[1],
                          "screen": res, "s": round(time.perf_counter() - t0, 1)}), flush=True)
    else:
        budget = int(sys.argv[6]) if len(sys.argv) > 6 else 500
        counts, mean, per_seed = al(Xp, Xt, C=C, seeds=seeds, budget=budget)
        print(json.dumps({"source": source, "params": params, "C": C, "dims": Xp.shape[1],
                          "seeds": seeds, "at": {n: round(at(counts, mean, n), 4)
                                                  for n in (100, 150, 200, 250, 300, 400, 500)
                                                  if n <= budget},
                          "curve": [[c, round(float(a), 4)] for c, a in zip(counts, mean)],
                          "s": round(time.perf_counter() - t0, 1)}), flush=True)
