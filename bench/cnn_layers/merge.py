import os
DIR = os.environ.get("CNN_LAYERS_DIR", "var/bench/cnn_layers")
import numpy as np, sys
v = sys.argv[1]
a, b = np.load(f"{DIR}/emb-{v}-0.npz"), np.load(f"{DIR}/emb-{v}-2500.npz")
np.savez(f"{DIR}/emb-{v}.npz", **{k: np.concatenate([a[k], b[k]]) for k in a.files})
print("merged", len(a.files), a["head_gap"].shape, b["head_gap"].shape)
