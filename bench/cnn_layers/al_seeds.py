"""Scratch: AL replay (product default strategy), one JSON line per seed as it finishes.
Usage: al_seeds.py SOURCE PARAMS_JSON C SEED0 SEED1 BUDGET OUT.jsonl"""
import os
DIR = os.environ.get("CNN_LAYERS_DIR", "var/bench/cnn_layers")
import json, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import harness as evalh
from learning import simulation
source, params, C = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
s0, s1, budget, out = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
Xp, Xt = evalh.transform(evalh.embeddings(source), **params)
for seed in range(s0, s1):
    t0 = time.perf_counter()
    curve = simulation._replay_adaptive(Xp, evalh.Y[evalh.POOL], Xt, evalh.Y[evalh.TEST],
                                        estimator=evalh.estimator(C), seed=seed, batch_size=10,
                                        budget=budget, seed_labels=simulation.SEED_LABELS)
    line = json.dumps({"source": source, "params": params, "C": C, "seed": seed,
                       "curve": [[n, round(a, 5)] for n, a, _f in curve],
                       "s": round(time.perf_counter() - t0, 1)})
    with open(out, "a") as fh:
        fh.write(line + "\n")
    print(line[:200], flush=True)
