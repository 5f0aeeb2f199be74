"""Closing the loop after a distribution shift: labels needed to recover, three policies.

A stream of scikit-learn digits meets a served model trained on 150 of them; halfway the
stream shifts (every image moved one pixel right, with a little noise), and the
served model's accuracy on the shifted digits falls. With the same label budget:

  (a) never retrain;
  (b) retrain on a schedule (every ``--every`` steps) on ``--batch`` randomly sampled
      recent production inputs not labeled yet (neither policy labels an input twice: a
      routed prediction points at its sample from then on, so routing skips it);
  (c) this service's rules with routing, both with actions *route* + *retrain* and a
      cool-down of ``--every`` steps: ``low_confidence_share > --threshold`` over the last
      ``--every`` steps (at least 30 predictions), and ``live_accuracy < pre-shift test
      accuracy - 0.02`` over the last 2 × ``--every`` steps (at least 20 feedbacks; clients
      send feedback on ``--feedback`` of predictions; as in the service, live accuracy
      counts client feedback only, not the routed inputs' labels). A firing labels the
      ``--batch`` most informative recent inputs (margin under the served model, spread
      over predicted classes: ``serving.rules.routing.spread_over_classes``, the code the
      service runs), then retrains. Client feedback feeds the metric only, in no policy
      the training set, so the three compare on annotator labels alone.

For comparison, ``rules_before`` is (c) as the service was before routed labels were
counted apart: they counted as live accuracy, which they bias low (the routed inputs are
the least certain), so the live-accuracy rule fired before the shift too.

Every retrain goes through the same promotion check as the service (macro-F1 on a fixed
held-out set, drawn from both regimes, against the served model). Accuracy on held-out
post-shift digits is measured after every step.

    python bench/production_loop.py            # seeds 0-4, 4 policies: 5-10 min
    python bench/production_loop.py --seeds 5 --first-seed 5   # seeds 5-9

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
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from learning.strategies import uncertainty_scores  # noqa: E402
from serving.rules.metrics import compare  # noqa: E402
from serving.rules.routing import spread_over_classes  # noqa: E402

LOW_CONFIDENCE = 0.5  # MONITORING_LOW_CONFIDENCE's default
RECOVERY_POINTS = 0.02


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


def run_policy(policy: str, data: dict, args, seed: int) -> dict:
    rng = np.random.default_rng(seed * 101 + zlib.crc32(policy.encode()) % 97)  # reproducible
    X_train, y_train = data["X_init"].copy(), data["y_init"].copy()
    served = model().fit(X_train, y_train)
    X_val, y_val = data["X_val"], data["y_val"]
    spent, curve, retrains, promoted = 0, [], 0, 0
    window: list[tuple[np.ndarray, np.ndarray]] = []  # (X, y) of recent steps
    last_fired = -10**9
    feedback: list[list[bool]] = []  # per step: was each prediction with feedback right
    labeled: set[tuple[int, int]] = set()  # (step, row) of the inputs labeled already
    for step, (X_step, y_step) in enumerate(data["stream"]):
        window = (window + [(X_step, y_step)])[-args.candidates:]
        # Candidates: the recent inputs not labeled yet (the service never routes an input
        # twice: a routed prediction points at its sample from then on).
        ids = [(step - len(window) + 1 + w, row) for w, (x, _) in enumerate(window)
               for row in range(len(x))]
        fresh = np.array([key not in labeled for key in ids])
        X_recent = np.vstack([x for x, _ in window])[fresh]
        y_recent = np.concatenate([y for _, y in window])[fresh]
        ids = [key for key, ok in zip(ids, fresh) if ok]
        take = None
        if policy == "schedule" and step % args.every == args.every - 1:
            take = rng.choice(len(X_recent), size=min(args.batch, len(X_recent)), replace=False)
        elif policy in ("rules", "rules_before"):
            X_metric = np.vstack([x for x, _ in window[-args.every:]])
            proba = served.predict_proba(X_metric)
            share = float((proba.max(axis=1) < LOW_CONFIDENCE).mean())
            # Client feedback on a share of this step's predictions (the metric only).
            asked = rng.random(len(X_step)) < args.feedback
            feedback.append(list(served.predict(X_step[asked]) == y_step[asked])
                            if asked.any() else [])
            seen = [ok for step_feedback in feedback[-2 * args.every:] for ok in step_feedback]
            live = float(np.mean(seen)) if seen else None
            low_conf_rule = len(X_metric) >= 30 and compare(">", share, args.threshold)
            live_rule = (len(seen) >= 20 and live is not None
                         and compare("<", live, data["pre_accuracy"] - RECOVERY_POINTS))
            if (low_conf_rule or live_rule) and step - last_fired >= args.every:
                last_fired = step
                scores = uncertainty_scores(served, X_recent, strategy="margin")
                predicted = [str(c) for c in served.predict(X_recent)]
                take = np.array(spread_over_classes(scores, predicted, args.batch), dtype=int)
                if policy == "rules_before":  # routed labels counted as live accuracy
                    feedback[-1].extend(np.array(predicted)[take] == y_recent[take])
        if take is not None and len(take) and spent < args.budget:
            take = take[: args.budget - spent]
            spent += len(take)
            labeled.update(ids[i] for i in take)
            X_train = np.vstack([X_train, X_recent[take]])
            y_train = np.concatenate([y_train, y_recent[take]])
            candidate = model().fit(X_train, y_train)
            retrains += 1
            if macro_f1(candidate, X_val, y_val) >= macro_f1(served, X_val, y_val):
                served, promoted = candidate, promoted + 1
        curve.append({"step": step, "shifted": step >= data["shift_step"], "labels": spent,
                      "post_accuracy": round(float(served.score(data["X_post"], data["y_post"])), 4)})
    target = data["pre_accuracy"] - RECOVERY_POINTS
    at_shift = curve[data["shift_step"] - 1]["labels"] if data["shift_step"] else 0
    recovered = next((c["labels"] - at_shift for c in curve if c["shifted"]
                      and c["post_accuracy"] >= target), None)
    return {"labels_spent": spent, "retrains": retrains, "promoted": promoted,
            "labels_to_recover": recovered, "labels_after_shift": spent - at_shift, "final_post_accuracy": curve[-1]["post_accuracy"],
            "curve": curve}


def dataset(seed: int, steps: int) -> dict:
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
    post = [(shifted(X[c], rng), y[c]) for c in chunks]
    return {"X_init": X[init], "y_init": y[init], "X_val": val_X, "y_val": y[val],
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
    parser.add_argument("--budget", type=int, default=800)
    parser.add_argument("--threshold", type=float, default=0.08,
                        help="rule 1: low_confidence_share > threshold")
    parser.add_argument("--feedback", type=float, default=0.1,
                        help="share of predictions clients send feedback on (rule 2's data)")
    args = parser.parse_args()
    started = time.time()
    results = {"args": vars(args), "seeds": {}}
    policies = ("never", "schedule", "rules", "rules_before")
    print(f"digits, shift: one pixel right + noise; budget {args.budget} labels, "
          f"{args.batch} per retrain, every {args.every} steps / rule window {args.every} steps")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        data = dataset(seed, args.steps)
        runs = {policy: run_policy(policy, data, args, seed) for policy in policies}
        results["seeds"][seed] = {"pre_accuracy": round(data["pre_accuracy"], 4),
                                  "post_accuracy_before": round(data["post_accuracy_before"], 4),
                                  "runs": runs}
        print(f"\nseed {seed}: pre-shift accuracy {data['pre_accuracy']:.3f}, on shifted "
              f"digits {data['post_accuracy_before']:.3f}; target {data['pre_accuracy'] - RECOVERY_POINTS:.3f}")
        print("  step " + "".join(f"{c['step']:>6}" for c in runs["never"]["curve"][data["shift_step"]::2]))
        for policy, run in runs.items():
            post = run["curve"][data["shift_step"]::2]
            print(f"  {policy:8} acc " + "".join(f"{c['post_accuracy']:6.3f}" for c in post))
            print(f"  {'':8} lab " + "".join(f"{c['labels']:6d}" for c in post))
        for policy, run in runs.items():
            print(f"  {policy:8} labels to recover: {run['labels_to_recover']}, spent "
                  f"{run['labels_spent']}, final {run['final_post_accuracy']:.3f}, "
                  f"retrains {run['retrains']} (promoted {run['promoted']})")
    rows = list(results["seeds"].values())
    print("\nper seed: labels to recover after the shift (None: not within the budget) / labels "
          "spent before the shift / final post-shift accuracy")
    for seed, r in results["seeds"].items():
        print(f"  seed {seed}: " + "; ".join(
            f"{p} {r['runs'][p]['labels_to_recover']} / "
            f"{r['runs'][p]['labels_spent'] - r['runs'][p]['labels_after_shift']} / "
            f"{r['runs'][p]['final_post_accuracy']:.3f}" for p in policies[1:]))
    b = [r["runs"]["schedule"]["labels_to_recover"] for r in rows]
    c = [r["runs"]["rules"]["labels_to_recover"] for r in rows]
    half = all(ci is not None and (bi is None or ci <= bi / 2) for bi, ci in zip(b, c))
    # Where schedule never recovered, it needs more than the labels it spent after the shift:
    # rules' share of what schedule needs is below this bound.
    bound = [None if ci is None else round(ci / (bi or r["runs"]["schedule"]["labels_after_shift"]), 3)
             for bi, ci, r in zip(b, c, rows)]
    never_below = all(r["runs"]["rules"]["final_post_accuracy"]
                      >= r["runs"]["schedule"]["final_post_accuracy"] for r in rows)
    results["summary"] = {"labels_to_recover": {"schedule": b, "rules": c,
                                                "rules_before": [r["runs"]["rules_before"][
                                                    "labels_to_recover"] for r in rows]},
                          "rules_over_schedule_at_most": bound,
                          "rules_at_most_half_of_schedule": half,
                          "rules_never_ends_below_schedule": never_below,
                          "seconds": round(time.time() - started, 1)}
    print(f"\nlabels to get within {RECOVERY_POINTS * 100:.0f} points of pre-shift accuracy "
          f"(None: never, within the budget): schedule {b}, rules {c}")
    print(f"rules' labels / schedule's (an upper bound where schedule did not recover): {bound}")
    print(f"target: rules need at most half of schedule's labels: {'MET' if half else 'NOT MET'}; "
          f"rules never end below schedule: {'MET' if never_below else 'NOT MET'}")
    suffix = f"_from{args.first_seed}" if args.first_seed else ""
    out = ROOT / "bench" / "results" / f"production_loop{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
