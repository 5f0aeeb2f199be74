"""Scratch: run many screen configs in one process. Usage: screen.py CONFIGS.json OUT.jsonl
CONFIGS: list of [source, transform params, C]."""
import os
DIR = os.environ.get("CNN_LAYERS_DIR", "var/bench/cnn_layers")
import json
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import harness as evalh  # noqa: E402

configs = json.load(open(sys.argv[1]))
seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
with open(sys.argv[2], "a") as out:
    for source, params, C in configs:
        t0 = time.perf_counter()
        try:
            Xp, Xt = evalh.transform(evalh.embeddings(source), **params)
        except (KeyError, FileNotFoundError) as exc:
            print("skip", source, exc, flush=True)
            continue
        res = evalh.screen(Xp, Xt, C=C, seeds=seeds, counts=(100, 250))
        line = json.dumps({"source": source, "params": params, "C": C, "dims": Xp.shape[1],
                           "screen": res, "s": round(time.perf_counter() - t0, 1)})
        print(line, flush=True)
        out.write(line + "\n")
