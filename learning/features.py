"""Turn raw sample payloads into feature matrices; pure functions, no Django."""
from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps


class FeatureError(ValueError):
    """A payload cannot be turned into features (not an image, too large, ...)."""


def image_vector(image: Image.Image, *, size: int) -> np.ndarray:
    """Return a flat grayscale vector in [0, 1] of ``image`` resized to ``size`` x ``size``."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P"):
        # Flatten transparency onto white so a transparent background reads as paper.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    gray = image.convert("L")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.float32).reshape(-1) / 255.0


def open_image(stream: BinaryIO, *, max_pixels: int) -> Image.Image:
    """Open and fully decode an image, refusing non-images and decompression bombs."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(stream) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise FeatureError(f"image has {width * height} pixels, more than {max_pixels}")
            image.load()
            return image.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FeatureError(f"image too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, FeatureError):
            raise
        raise FeatureError("not a decodable image") from exc


def image_matrix(streams: Iterable[BinaryIO], *, size: int, max_pixels: int) -> np.ndarray:
    """Return one row of pixel features per image stream."""
    rows = [image_vector(open_image(s, max_pixels=max_pixels), size=size) for s in streams]
    if not rows:
        return np.empty((0, size * size), dtype=np.float32)
    return np.vstack(rows)
