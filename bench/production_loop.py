"""Closing the loop after a distribution shift: labels needed to recover, three policies.

A stream of scikit-learn digits meets a served model trained on 150 of them; after
``--steps`` / 2 steps the stream shifts (every image moved one pixel right, with a little
noise), and the served model's accuracy on the shifted digits falls. After the shift the
stream's digits pass ``--post-passes`` times (2: a new order and fresh noise in the second
pass), so that the schedule has inputs enough to recover and the labels it needs are a
measurement, not a bound. The label budget is the same for every policy: by default what
the schedule spends over the whole stream, so the budget never stops it.

  (a) never retrain;
  (b) retrain on a schedule (every ``--every`` steps) on ``--batch`` randomly sampled
      recent production inputs not labeled yet (neither policy labels an input twice: a
      routed prediction points at its sample from then on, so routing skips it), of which
      ``--test-share`` (0.2, the default ``test_fraction``) are held out as test labels;
  (c) this service's rules with routing, all with actions *route* + *retrain*, read as the
      service reads them (the served version's predictions only: after a promotion a
      metric starts again), one firing per ``--every`` steps (their cool-down):
        1. ``low_confidence_share > --threshold`` over the last ``--every`` steps (at least
           30 predictions);
        2. ``live_accuracy < pre-shift test accuracy - 0.02`` over the last 2 × ``--every``
           steps (at least 20 observations: client feedback, sent on ``--feedback`` of the
           predictions, and the labels of the inputs routes drew at random);
        3. ``drift >= 0.5`` over the last ``--every`` steps (at least 30 inputs): the
           monitoring's share of drifted features, computed as the service computes it for
           images (``serving.drift``: K-S per principal component of the project's samples
           at training time, here the training set);
        4. ``model_age_hours >= --age-steps`` (the served version's age in steps): a slow
           schedule of routed inputs once the other rules are quiet.
      A firing routes ``--batch`` inputs: ``--random-share`` (0.2, the rule's default) of
      them drawn uniformly from the served version's recent predictions without client
      feedback (routed ones included, marked rather than labeled twice:
      ``serving.rules.routing.random_picks``) and held out as test labels, as the service
      holds them out, then the most informative of the rest (margin under the served model, spread over
      predicted classes: ``serving.rules.routing.spread_over_classes``, the code the
      service runs); then it retrains. Client feedback feeds the metric only, in no policy
      the training set, so the three compare on annotator labels alone.

(c) is ``rules`` (the service's defaults); in the same run ``rules_no_draw`` draws nothing
(the default before the draws were held out), ``no_age`` leaves out rule 4 and
``rules_diverse`` picks the informative inputs by ``diverse_margin`` (k-means over the most
uncertain) instead of spreading them over predicted classes.

``--ceiling`` runs no policy: from the model served at the shift, it counts the labels to
recover when random picks, the service's spread picks or ``diverse_margin`` choose batches
from the whole post-shift stream, each followed by a retrain that is served (no detection,
no promotion check, nothing held out): how far below random's labels picking can bring the
recovery on this stream at all.

Every retrain goes through the same promotion check as the service: paired margins on the
held-out labels against the served model's (``--check geq``: the macro-F1 check the service
had before, which the README's figures older than "Newest: the same loop with the promotion
check on paired margins" used). As in a project, the held-out labels start as 120 digits of
the imported data, before the shift (``--val pre``), and grow with each policy's held-out
labels; ``--val mixed`` starts with 60 of them and 60 shifted ones instead (the
measurements before held-out draws, whose promotion check saw shifted digits no policy
paid for). Accuracy on held-out post-shift digits is measured after every step.

    python bench/production_loop.py            # seeds 0-4, 6 policies, 3 repeats
    python bench/production_loop.py --seeds 5 --first-seed 5   # seeds 5-9
    python bench/production_loop.py --seeds 10 --ceiling --batch 10   # the offline ceiling
    python bench/production_loop.py --seeds 10 --ceiling --post-weight 3   # post-shift labels x3

Prints per policy and seed the post-shift accuracy over time with labels spent, the labels
each policy needed to get back within 2 points of its pre-shift accuracy, and checks the
target: (c) recovers with at most half the labels (b) needs, and (c) never ends below (b).
Writes bench/results/production_loop.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from learning.adaptive import test_scores  # noqa: E402
from learning.promotion_check import paired_verdict  # noqa: E402
from learning.services.drift_reference import COMPONENTS  # noqa: E402
from learning.strategies import select_batch, uncertainty_scores  # noqa: E402
from serving.drift import DRIFT_SHARE, dataset_drift, numeric_drift  # noqa: E402
from serving.drift_selectors import MIN_ROWS as DRIFT_MIN_ROWS  # noqa: E402
from serving.rules.metrics import compare  # noqa: E402
from serving.rules.routing import random_picks, spread_over_classes  # noqa: E402

LOW_CONFIDENCE = 0.5  # MONITORING_LOW_CONFIDENCE's default
RECOVERY_POINTS = 0.02
LIVE_MIN_COUNT = 20
RULES = ("low_confidence", "live_accuracy", "drift")
AGE = "model_age"  # model_age_hours >= --age-steps
# (c) and its ablations: the rule set and the share of each route drawn at random.
POLICIES = {
    "never": None, "schedule": None,
    "rules": {"random_share": 0.2, "rule_names": RULES + (AGE,)},
    "rules_no_draw": {"random_share": 0.0, "rule_names": RULES + (AGE,)},
    "no_age": {"random_share": 0.2, "rule_names": RULES},
    # (c) with k-means diversity over the most uncertain (strategies' diverse_margin) in
    # place of the service's spread over predicted classes
    "rules_diverse": {"random_share": 0.2, "rule_names": RULES + (AGE,), "pick": "diverse"},
}


def shifted(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    images = X.reshape(-1, 8, 8)
    moved = np.zeros_like(images)
    moved[:, :, 1:] = images[:, :, :-1]
    noisy = moved + rng.normal(0, 0.25, moved.shape)
    return np.clip(noisy, 0, 16).reshape(len(X), 64)


def model() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))


def macro_f1(estimator, X, y) -> float:
    return float(f1_score(y, estimator.predict(X), average="macro"))


def not_worse(candidate, served, X, y, check: str) -> bool:
    """The promotion check: the service's paired margins, or the macro-F1 one before it."""
    if check == "geq":
        return macro_f1(candidate, X, y) >= macro_f1(served, X, y)
    return not paired_verdict(test_scores(candidate, X, y), test_scores(served, X, y)).worse


def _reference(X_pool: np.ndarray) -> dict:
    """A version's drift reference as the service builds it for images: the project's
    samples at training time projected on their first principal components (no confidence
    feature: every sample here is a training sample, and the service needs 30 unseen)."""
    pca = PCA(n_components=COMPONENTS, random_state=0).fit(X_pool)
    keep = pca.explained_variance_ratio_ > 1e-6
    return {"pca": pca, "keep": keep, "values": pca.transform(X_pool)[:, keep]}


def _drift_share(reference: dict, X_window: np.ndarray) -> float:
    projected = reference["pca"].transform(X_window)[:, reference["keep"]]
    features = [numeric_drift(f"PC{j + 1}", reference["values"][:, j], projected[:, j])
                for j in range(projected.shape[1])]
    return dataset_drift(features)[1]


class Loop:
    """Policy (c)'s state: every prediction of the recent steps as the service logs it
    (the served version that made it, its confidence, client feedback asked or not, routed
    and labeled, drawn at random for live accuracy), and the rules read over it."""

    def __init__(self, args, data: dict, rng: np.random.Generator, random_share: float,
                 rule_names: tuple[str, ...], pick: str = "spread"):
        self.args, self.data, self.rng, self.pick = args, data, rng, pick
        self.served_since = 0  # the step the served version was promoted at
        self.drawn = 0  # of the last route's inputs, how many (the first) were drawn
        self.random_share, self.rule_names = random_share, rule_names
        self.steps: list[dict] = []
        self.version, self.last_fired = 1, -10**9
        self.fired = {name: 0 for name in rule_names}

    def observe(self, served, X: np.ndarray, y: np.ndarray) -> None:
        proba = served.predict_proba(X)
        self.steps.append({
            "X": X, "y": y, "pred": served.classes_[proba.argmax(axis=1)],
            "conf": proba.max(axis=1), "version": np.full(len(X), self.version),
            "asked": self.rng.random(len(X)) < self.args.feedback,
            "labeled": np.zeros(len(X), bool), "sampled": np.zeros(len(X), bool)})

    def _rows(self, steps: int, *, served_only: bool) -> list[tuple[int, np.ndarray]]:
        out = []
        for s in range(max(0, len(self.steps) - steps), len(self.steps)):
            mask = np.ones(len(self.steps[s]["y"]), bool)
            if served_only:
                mask &= self.steps[s]["version"] == self.version
            out.append((s, mask))
        return out

    def readings(self, reference: dict) -> dict[str, bool]:
        every, a = self.args.every, self.args
        recent = self._rows(every, served_only=True)
        conf = np.concatenate([self.steps[s]["conf"][m] for s, m in recent])
        X_window = np.vstack([self.steps[s]["X"][m] for s, m in recent])
        # Live accuracy: client feedback, and the labels of the inputs drawn at random.
        seen = np.concatenate([(self.steps[s]["pred"] == self.steps[s]["y"])[
            m & (self.steps[s]["asked"] | (self.steps[s]["sampled"] & self.steps[s]["labeled"]))]
            for s, m in self._rows(2 * every, served_only=True)])
        met = {}
        if "low_confidence" in self.rule_names:
            met["low_confidence"] = len(conf) >= 30 and compare(
                ">", float((conf < LOW_CONFIDENCE).mean()), a.threshold)
        if "live_accuracy" in self.rule_names:
            met["live_accuracy"] = len(seen) >= LIVE_MIN_COUNT and compare(
                "<", float(seen.mean()), self.data["pre_accuracy"] - RECOVERY_POINTS)
        if AGE in self.rule_names:
            met[AGE] = len(self.steps) - 1 - self.served_since >= a.age_steps
        if "drift" in self.rule_names:
            met["drift"] = len(X_window) >= DRIFT_MIN_ROWS and compare(
                ">=", _drift_share(reference, X_window), DRIFT_SHARE)
        return met

    def route(self, served, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs to label: ``random_picks(k, share)`` drawn uniformly from the served
        version's recent predictions without client feedback (routed ones included: they
        are marked, not routed twice), then the most informative of the rest."""
        window = self._rows(self.args.candidates, served_only=False)
        keys = [(s, i) for s, m in window for i in np.flatnonzero(m)]
        step = {s: self.steps[s] for s, _m in window}
        drawable = [key for key in keys if step[key[0]]["version"][key[1]] == self.version
                    and not step[key[0]]["asked"][key[1]] and not step[key[0]]["sampled"][key[1]]]
        m = min(random_picks(k, self.random_share), len(drawable))
        new: list[tuple[int, int]] = []
        for j in self.rng.choice(len(drawable), size=m, replace=False) if m else ():
            s, i = drawable[j]
            step[s]["sampled"][i] = True
            if not step[s]["labeled"][i]:
                new.append((s, i))
        fresh = [key for key in keys if not step[key[0]]["labeled"][key[1]]
                 and not step[key[0]]["asked"][key[1]] and key not in new]
        if fresh and len(new) < k:
            X_fresh = np.vstack([step[s]["X"][i] for s, i in fresh])
            if self.pick == "diverse":
                picked = select_batch(served, X_fresh, n=k - len(new), strategy="diverse_margin",
                                      seed=len(self.steps))
                new += [fresh[int(i)] for i in picked]
            else:
                scores = uncertainty_scores(served, X_fresh, strategy="margin")
                predicted = [str(c) for c in served.predict(X_fresh)]
                new += [fresh[i] for i in spread_over_classes(scores, predicted, k - len(new))]
        for s, i in new:
            step[s]["labeled"][i] = True
        self.drawn = int(sum(step[s]["sampled"][i] for s, i in new))
        if not new:
            return np.empty((0, 64)), np.empty(0, dtype=str)
        return (np.vstack([step[s]["X"][i] for s, i in new]),
                np.array([step[s]["y"][i] for s, i in new]))


def _hold_out(X_val, y_val, X_new, y_new, held: int):
    """Move the first ``held`` new labels to the held-out set: ((X_val, y_val), (X_new, y_new))."""
    if not held:
        return (X_val, y_val), (X_new, y_new)
    return ((np.vstack([X_val, X_new[:held]]), np.concatenate([y_val, y_new[:held]])),
            (X_new[held:], y_new[held:]))


def run_policy(policy: str, data: dict, args, seed: int, repeat: int = 0) -> dict:
    rng = np.random.default_rng(seed * 101 + zlib.crc32(policy.encode()) % 97
                                + 7919 * repeat)  # reproducible
    X_train, y_train = data["X_init"].copy(), data["y_init"].copy()
    served = model().fit(X_train, y_train)
    X_val, y_val = data["X_val"], data["y_val"]
    if args.val == "pre":  # as the service: the test split holds imported (pre-shift) data
        X_val, y_val = data["X_val_pre"], data["y_val_pre"]
    spent, curve, retrains, promoted = 0, [], 0, 0
    rules = POLICIES[policy]
    if rules and args.random_share is not None:
        rules = {**rules, "random_share": args.random_share}
    loop = Loop(args, data, rng, **rules) if rules else None
    reference = _reference(X_train) if loop and "drift" in loop.rule_names else None
    window: list[tuple[np.ndarray, np.ndarray]] = []  # schedule: (X, y) of recent steps
    labeled: set[tuple[int, int]] = set()  # schedule: (step, row) of the inputs labeled
    for step, (X_step, y_step) in enumerate(data["stream"]):
        X_new = y_new = None
        if policy == "schedule":
            window = (window + [(X_step, y_step)])[-args.candidates:]
            ids = [(step - len(window) + 1 + w, row) for w, (x, _) in enumerate(window)
                   for row in range(len(x))]
            fresh = np.array([key not in labeled for key in ids])
            if step % args.every == args.every - 1 and spent < args.budget:
                X_recent = np.vstack([x for x, _ in window])[fresh]
                y_recent = np.concatenate([y for _, y in window])[fresh]
                keys = [key for key, ok in zip(ids, fresh) if ok]
                take = rng.choice(len(X_recent), size=min(args.batch, len(X_recent)),
                                  replace=False)[: args.budget - spent]
                labeled.update(keys[i] for i in take)
                X_new, y_new = X_recent[take], y_recent[take]
                # random picks already: the first ones are held out as test labels
                held = random_picks(len(take), args.test_share)
                spent += held
                (X_val, y_val), (X_new, y_new) = _hold_out(X_val, y_val, X_new, y_new, held)
        elif loop is not None:
            loop.observe(served, X_step, y_step)
            met = loop.readings(reference)
            if any(met.values()) and step - loop.last_fired >= args.every and spent < args.budget:
                loop.last_fired = step
                for name, ok in met.items():
                    loop.fired[name] += ok
                X_new, y_new = loop.route(served, min(args.batch, args.budget - spent))
                # as the service: the inputs drawn at random are held-out test labels
                spent += loop.drawn
                (X_val, y_val), (X_new, y_new) = _hold_out(X_val, y_val, X_new, y_new,
                                                           loop.drawn)
        if X_new is not None and len(X_new):
            spent += len(X_new)
            X_train = np.vstack([X_train, X_new])
            y_train = np.concatenate([y_train, y_new])
            candidate = model().fit(X_train, y_train)
            retrains += 1
            if not_worse(candidate, served, X_val, y_val, args.check):
                served, promoted = candidate, promoted + 1
                if loop is not None:
                    loop.version += 1
                    loop.served_since = step
                    if reference is not None:
                        reference = _reference(X_train)
        curve.append({"step": step, "shifted": step >= data["shift_step"], "labels": spent,
                      "post_accuracy": round(float(served.score(data["X_post"], data["y_post"])), 4)})
    target = data["pre_accuracy"] - RECOVERY_POINTS
    at_shift = curve[data["shift_step"] - 1]["labels"] if data["shift_step"] else 0
    recovered = next((c["labels"] - at_shift for c in curve if c["shifted"]
                      and c["post_accuracy"] >= target), None)
    return {"labels_spent": spent, "retrains": retrains, "promoted": promoted,
            "labels_to_recover": recovered, "labels_after_shift": spent - at_shift,
            "labels_before_shift": at_shift,
            "final_post_accuracy": curve[-1]["post_accuracy"],
            "fired_by": loop.fired if loop else None, "curve": curve}


CEILING_PICKS = ("random", "spread", "diverse")


def ceiling_run(data: dict, pick: str, batch: int, seed: int, limit: int,
                post_weight: float = 1.0) -> int | None:
    """Labels to recover with every advantage a policy could have: the whole post-shift
    stream to pick from at once, a retrain served after every ``batch`` labels (no
    detection, no promotion check, nothing held out), from the model served at the shift.
    ``pick``: ``random``, ``spread`` (margin spread over predicted classes: the service's
    routing) or ``diverse`` (diverse_margin: k-means over the most uncertain).
    ``post_weight``: each retrain weighs the post-shift labels this much against the 150
    the served model started from (1: as every policy and the service train)."""
    rng = np.random.default_rng(seed * 31 + CEILING_PICKS.index(pick))
    post = data["stream"][data["shift_step"]:]
    X_pool = np.vstack([x for x, _y in post])
    y_pool = np.concatenate([y for _x, y in post])
    X_train, y_train = data["X_init"], data["y_init"]
    served = model().fit(X_train, y_train)
    target = data["pre_accuracy"] - RECOVERY_POINTS
    labeled, spent = np.zeros(len(y_pool), bool), 0
    while served.score(data["X_post"], data["y_post"]) < target:
        free = np.flatnonzero(~labeled)
        if spent >= limit or not len(free):
            return None
        n = min(batch, len(free))
        if pick == "random":
            chosen = rng.choice(free, size=n, replace=False)
        elif pick == "spread":
            scores = uncertainty_scores(served, X_pool[free], strategy="margin")
            predicted = [str(c) for c in served.predict(X_pool[free])]
            chosen = free[np.asarray(spread_over_classes(scores, predicted, n))]
        else:
            chosen = free[select_batch(served, X_pool[free], n=n, strategy="diverse_margin",
                                       seed=seed * 1000 + spent)]
        labeled[chosen] = True
        spent += n
        X_train = np.vstack([X_train, X_pool[chosen]])
        y_train = np.concatenate([y_train, y_pool[chosen]])
        weights = np.ones(len(y_train))
        weights[len(data["y_init"]):] = post_weight
        served = model().fit(X_train, y_train, logisticregression__sample_weight=weights)
    return spent


def ceiling(args) -> None:
    """``--ceiling``: how far below random's labels uncertainty sampling can bring the
    recovery on this stream at all (see ``ceiling_run``); prints per seed and the ratios."""
    limit = args.budget
    print(f"ceiling: labels to recover from the model served at the shift, the whole "
          f"post-shift stream to pick from, a retrain after every {args.batch} labels, "
          f"post-shift labels weighted {args.post_weight:g}")
    found: dict[str, list] = {pick: [] for pick in CEILING_PICKS}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        data = dataset(seed, args.steps, args.post_passes)
        row = {pick: ceiling_run(data, pick, args.batch, seed, limit, args.post_weight)
               for pick in CEILING_PICKS}
        for pick, labels in row.items():
            found[pick].append(labels)
        print(f"  seed {seed}: " + ", ".join(f"{p} {v}" for p, v in row.items()))
    summary = {"labels_to_recover": found}
    for pick in CEILING_PICKS[1:]:
        pairs = [(r, c) for r, c in zip(found["random"], found[pick]) if r and c]
        ratios = [round(c / r, 3) for r, c in pairs]
        pooled = round(sum(c for _r, c in pairs) / sum(r for r, _c in pairs), 3) if pairs else None
        median = round(_median(ratios), 3) if ratios else None
        summary[pick] = {"ratios": ratios, "median": median, "pooled": pooled,
                         "seeds_at_most_half": sum(x <= 0.5 for x in ratios)}
        print(f"{pick} / random: {ratios}; median {median}, pooled {pooled}, "
              f"at most half in {summary[pick]['seeds_at_most_half']} of {len(ratios)} seeds")
    suffix = f"_from{args.first_seed}" if args.first_seed else ""
    if args.post_weight != 1.0:
        suffix += f"_w{args.post_weight:g}"
    out = ROOT / "bench" / "results" / f"production_loop_ceiling_b{args.batch}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": summary}, indent=1))
    print(f"wrote {out}")


def _median(values: list) -> float | None:
    """The median, None (never recovered) counting as the largest."""
    ordered = sorted(values, key=lambda v: (v is None, v if v is not None else 0))
    n = len(ordered)
    low, high = ordered[(n - 1) // 2], ordered[n // 2]
    if low is None or high is None:
        return None
    return (low + high) / 2


def runs_median(reps: list[dict]) -> dict:
    """One policy's repeats on one seed (different draws of feedback, random picks and
    schedules on the same stream): the medians, the repeats, and the first one's curve."""
    keys = ("labels_to_recover", "labels_spent", "labels_before_shift", "labels_after_shift",
            "final_post_accuracy")
    return {**{k: _median([r[k] for r in reps]) for k in keys},
            "retrains": _median([r["retrains"] for r in reps]),
            "promoted": _median([r["promoted"] for r in reps]),
            "fired_by": reps[0]["fired_by"], "curve": reps[0]["curve"],
            "repeats": [{k: r[k] for k in keys + ("retrains", "promoted", "fired_by")}
                        for r in reps]}


def dataset(seed: int, steps: int, post_passes: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    digits = load_digits()
    X, y = digits.data, digits.target.astype(str)
    order = rng.permutation(len(X))
    init, test, val, stream = order[:150], order[150:550], order[550:670], order[670:]
    X_post, y_post = shifted(X[test], rng), y[test]
    val_X = np.vstack([X[val[:60]], shifted(X[val[60:]], rng)])
    served = model().fit(X[init], y[init])
    half = steps // 2
    chunks = np.array_split(stream, half)
    pre = [(X[c], y[c]) for c in chunks]
    post = []
    for p in range(post_passes):  # each pass: the stream's digits in a new order, fresh noise
        order_p = stream if p == 0 else rng.permutation(stream)
        post += [(shifted(X[c], rng), y[c]) for c in np.array_split(order_p, half)]
    return {"X_init": X[init], "y_init": y[init], "X_val": val_X, "y_val": y[val],
            "X_val_pre": X[val], "y_val_pre": y[val],  # the same 120, none shifted
            "X_post": X_post, "y_post": y_post, "stream": pre + post, "shift_step": half,
            "pre_accuracy": float(served.score(X[test], y[test])),
            "post_accuracy_before": float(served.score(X_post, y_post))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed+1, ...")
    parser.add_argument("--steps", type=int, default=60, help="stream steps; the shift is halfway")
    parser.add_argument("--every", type=int, default=2, help="schedule period and rule window (steps)")
    parser.add_argument("--batch", type=int, default=30, help="labels per retrain / route_count")
    parser.add_argument("--candidates", type=int, default=6,
                        help="steps of recent inputs both policies pick from (the rule's window)")
    parser.add_argument("--post-passes", type=int, default=2,
                        help="after the shift the stream's digits pass this many times (new "
                             "order, fresh noise each pass), so the schedule has the labels "
                             "to recover")
    parser.add_argument("--budget", type=int, default=None,
                        help="labels per policy (default: what the schedule spends over the "
                             "whole stream, so the budget never stops it)")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help=f"comma-separated, of {', '.join(POLICIES)}")
    parser.add_argument("--threshold", type=float, default=0.08,
                        help="rule 1: low_confidence_share > threshold")
    parser.add_argument("--random-share", type=float, default=None,
                        help="the rules' random share (default: each policy's; rules_no_draw "
                             "included)")
    parser.add_argument("--age-steps", type=int, default=8,
                        help="model_age rule: the served version is this many steps old")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per policy and seed (other draws, same stream); the "
                             "figures are their medians")
    parser.add_argument("--val", choices=("mixed", "pre"), default="pre",
                        help="the promotion check's held-out labels at the start: 120 "
                             "pre-shift digits, as a project's test split of imported data "
                             "(pre), or 60 of them + 60 shifted ones from nowhere (mixed, the "
                             "measurements before the held-out draws)")
    parser.add_argument("--test-share", type=float, default=0.2,
                        help="share of the schedule's random picks held out as test labels "
                             "instead of training (the project's default test_fraction); the "
                             "rules hold out the inputs they draw at random, as the service")
    parser.add_argument("--feedback", type=float, default=0.1,
                        help="share of predictions clients send feedback on (rule 2's data)")
    parser.add_argument("--check", choices=("margins", "geq"), default="margins",
                        help="the promotion check: the service's paired margins, or the "
                        "macro-F1 check it had before (at least the served one's)")
    parser.add_argument("--ceiling", action="store_true",
                        help="instead of the policies: labels to recover offline, random "
                             "picks against uncertainty sampling, each with every advantage "
                             "(how much fewer labels than random picking can need here at all)")
    parser.add_argument("--post-weight", type=float, default=1.0,
                        help="--ceiling only: weight of the post-shift labels in each retrain "
                             "against the served model's 150 (does weighting the new "
                             "distribution's labels move the ceiling?)")
    args = parser.parse_args()
    if args.post_weight <= 0:
        parser.error("--post-weight: must be positive")
    if not args.policies.startswith("never,schedule"):
        parser.error("--policies: start with never,schedule (the baselines the target is against)")
    total_steps = args.steps // 2 * (1 + args.post_passes)
    if args.budget is None:
        args.budget = total_steps // args.every * args.batch
    if args.ceiling:
        ceiling(args)
        return
    started = time.time()
    results = {"args": vars(args), "seeds": {}}
    policies = tuple(args.policies.split(","))
    print(f"digits, shift: one pixel right + noise; budget {args.budget} labels, "
          f"{args.batch} per retrain, every {args.every} steps / rule window {args.every} steps")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        data = dataset(seed, args.steps, args.post_passes)
        runs = {policy: runs_median([run_policy(policy, data, args, seed, repeat)
                                     for repeat in range(args.repeats)])
                for policy in policies}
        results["seeds"][seed] = {"pre_accuracy": round(data["pre_accuracy"], 4),
                                  "post_accuracy_before": round(data["post_accuracy_before"], 4),
                                  "runs": runs}
        print(f"\nseed {seed}: pre-shift accuracy {data['pre_accuracy']:.3f}, on shifted "
              f"digits {data['post_accuracy_before']:.3f}; target {data['pre_accuracy'] - RECOVERY_POINTS:.3f}")
        print("  step " + "".join(f"{c['step']:>6}" for c in next(iter(runs.values()))["curve"][data["shift_step"]::2]))
        for policy, run in runs.items():
            post = run["curve"][data["shift_step"]::2]
            print(f"  {policy:15} acc " + "".join(f"{c['post_accuracy']:6.3f}" for c in post))
            print(f"  {'':15} lab " + "".join(f"{c['labels']:6d}" for c in post))
        for policy, run in runs.items():
            for rep in run["repeats"]:
                fired = f", firings by rule {rep['fired_by']}" if rep["fired_by"] else ""
                print(f"  {policy:15} labels to recover: {rep['labels_to_recover']}, spent "
                      f"{rep['labels_spent']}, final {rep['final_post_accuracy']:.3f}, "
                      f"retrains {rep['retrains']} (promoted {rep['promoted']}){fired}")
    rows = list(results["seeds"].values())
    print("\nper seed: labels to recover after the shift (None: not within the budget) / labels "
          "spent before the shift / final post-shift accuracy")
    for seed, r in results["seeds"].items():
        print(f"  seed {seed}: " + "; ".join(
            f"{p} {r['runs'][p]['labels_to_recover']} / "
            f"{r['runs'][p]['labels_before_shift']:g} / "
            f"{r['runs'][p]['final_post_accuracy']:.3f}" for p in policies[1:]))
    b = [r["runs"]["schedule"]["labels_to_recover"] for r in rows]
    results["summary"] = {"labels_to_recover": {p: [r["runs"][p]["labels_to_recover"] for r in rows]
                                                for p in policies},
                          "seconds": round(time.time() - started, 1)}
    print(f"\nlabels to get within {RECOVERY_POINTS * 100:.0f} points of pre-shift accuracy "
          f"(None: never, within the budget): schedule {b}")
    for policy in (p for p in policies if POLICIES[p]):
        c = [r["runs"][policy]["labels_to_recover"] for r in rows]
        # Where schedule never recovered, it needs more than the labels it spent after the
        # shift: the policy's share of what schedule needs is below this bound.
        bound = [None if ci is None else round(
            ci / (bi or r["runs"]["schedule"]["labels_after_shift"]), 3) for bi, ci, r in zip(b, c, rows)]
        halves = sum(x is not None and x <= 0.5 for x in bound)
        half = halves == len(rows)
        below = sum(r["runs"][policy]["final_post_accuracy"]
                    < r["runs"]["schedule"]["final_post_accuracy"] for r in rows)
        both = [(bi, ci) for bi, ci in zip(b, c) if bi is not None and ci is not None]
        pooled = round(sum(ci for _b, ci in both) / sum(bi for bi, _c in both), 3) if both else None
        results["summary"][policy] = {"over_schedule_at_most": bound, "at_most_half": half,
                                      "seeds_at_most_half": halves, "pooled_ratio": pooled,
                                      "ends_below_schedule": below}
        print(f"{policy}: labels {c}; / schedule's (an upper bound where schedule did not "
              f"recover) {bound}; pooled over the seeds both recovered {pooled}")
        print(f"  target: at most half of schedule's labels: {'MET' if half else 'NOT MET'} "
              f"({halves} of {len(rows)} seeds); never ends below schedule: "
              f"{'MET' if not below else f'NOT MET ({below} of {len(rows)})'}")
    suffix = f"_from{args.first_seed}" if args.first_seed else ""
    out = ROOT / "bench" / "results" / f"production_loop{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
