"""Check uploaded images with Pillow and make their thumbnails; no Django."""
from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; the message says why."""


@dataclass(frozen=True)
class CheckedImage:
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.format, self.format.lower())


def image_check(data: bytes, *, formats: Sequence[str], max_pixels: int,
                max_bytes: int) -> CheckedImage:
    """Return the format and size of ``data`` after decoding it completely.

    The pixel count is checked from the header before anything is decoded, so a
    decompression bomb is refused without allocating its pixels; Pillow's own bomb
    warning is turned into an error as a second guard.
    """
    if len(data) > max_bytes:
        raise ImageRejected(f"the file has {len(data)} bytes, more than {max_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(formats)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"the image has {width}x{height} pixels, more than {max_pixels}")
                image.load()
                return CheckedImage(format=image.format, width=width, height=height)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(f"the image is too large (decompression-bomb guard): {exc}") from None
        except UnidentifiedImageError:
            raise ImageRejected(
                f"not an image in an allowed format ({', '.join(formats)})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            if isinstance(exc, ImageRejected):
                raise
            raise ImageRejected(f"the image cannot be decoded: {exc}") from None


def content_sha256(data: bytes) -> str:
    """The hex sha256 of an image file's bytes: what samples are compared by for copies."""
    return hashlib.sha256(data).hexdigest()


def thumbnail_png(data: bytes, *, size: int) -> bytes:
    """Return a PNG no larger than ``size`` on its longer side; call after image_check."""
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()
