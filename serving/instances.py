"""Turn API instances into feature rows: one featurizer per project kind.

To serve a new kind, write ``_featurize_<kind>(project, instances) -> np.ndarray`` that
raises ``InvalidInstance`` naming the first bad instance, and register it in
``FEATURIZERS``. Featurizers must build the same rows ``learning`` trains on.
"""
from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from django.conf import settings
from django.core.files import File
from PIL import Image

from annotation.errors import DomainError
from annotation.models import Project
from learning import features


class InvalidInstance(DomainError):
    code = "invalid_instance"


def _unknown_keys(index: int, instance: Mapping, allowed: set[str]) -> None:
    unknown = sorted(set(instance) - allowed)
    if unknown:
        raise InvalidInstance(
            f"instances[{index}]: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected one of {sorted(allowed)}",
            detail={"index": index, "unknown": unknown},
        )


def _image_bytes(index: int, instance: Mapping) -> bytes:
    """Return the raw bytes of one image instance: a multipart file or a base64 string."""
    if not isinstance(instance, Mapping):
        raise InvalidInstance(f"instances[{index}]: expected an object", detail={"index": index})
    _unknown_keys(index, instance, {"image_base64", "image"})
    upload = instance.get("image")
    if upload is not None:
        if not isinstance(upload, File):
            raise InvalidInstance(
                f"instances[{index}]: 'image' is a multipart file field; JSON clients send "
                "'image_base64'",
                detail={"index": index},
            )
        upload.seek(0)
        return upload.read()
    encoded = instance.get("image_base64")
    if not isinstance(encoded, str) or not encoded:
        raise InvalidInstance(
            f"instances[{index}]: an image project needs 'image_base64', a base64 string",
            detail={"index": index},
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInstance(
            f"instances[{index}]: image_base64 is not valid base64", detail={"index": index}
        )


def _pixels(data: bytes) -> int:
    """Return the pixel count an image header claims, without decoding it (0 if unreadable)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 0  # open_image below names the problem
    return width * height


def _featurize_image(project: Project, instances: Sequence[Mapping]) -> np.ndarray:
    """Decode every image (Pillow's bomb guard on), within a pixel budget for the batch."""
    payloads = [_image_bytes(i, instance) for i, instance in enumerate(instances)]
    budget = settings.PREDICT_MAX_TOTAL_PIXELS
    total = 0
    for i, data in enumerate(payloads):
        total += _pixels(data)
        if total > budget:
            raise InvalidInstance(
                f"instances[{i}]: the batch decodes to more than {budget} pixels; send fewer "
                "or smaller images",
                detail={"index": i, "max_total_pixels": budget},
            )
    rows = []
    for i, data in enumerate(payloads):
        try:
            image = features.open_image(io.BytesIO(data), max_pixels=settings.MAX_IMAGE_PIXELS)
        except features.FeatureError as exc:
            raise InvalidInstance(f"instances[{i}]: {exc}", detail={"index": i})
        rows.append(features.image_vector(image, size=project.image_size))
    return np.vstack(rows)


Featurizer = Callable[[Project, Sequence[Mapping]], np.ndarray]

FEATURIZERS: dict[str, Featurizer] = {
    Project.Kind.IMAGE: _featurize_image,
}


def instances_featurize(*, project: Project, instances: Sequence[Mapping]) -> np.ndarray:
    """Return the feature matrix of API instances, naming the first bad one if any."""
    featurizer = FEATURIZERS.get(project.kind)
    if featurizer is None:
        raise InvalidInstance(f"projects of kind {project.kind!r} cannot predict yet")
    if not instances:
        raise InvalidInstance("send at least one instance")
    return featurizer(project, instances)
