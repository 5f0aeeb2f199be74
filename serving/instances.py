"""Turn API instances into feature rows: one featurizer per project kind.

Text projects take ``{"text": "..."}``; tabular projects ``{column: value, ...}`` with
exactly the columns of the project's import (missing or unknown ones are named in a 400).
Every string is checked by ``core.text.text_check`` (no NUL, valid Unicode, at most
``IMPORT_MAX_TEXT_CHARS``): a 400 naming ``instances[i].<field>``, before it reaches a log
row or a sample.

To serve a new kind, write ``_featurize_<kind>(project, instances)`` returning model input that
raises ``InvalidInstance`` naming the first bad instance, and register it in
``FEATURIZERS``. Featurizers must build the same rows ``learning`` trains on.

Image projects take three instance shapes: ``{"image_base64": "..."}`` (JSON),
``{"image": <file>}`` (multipart), and ``{"pixels": [...]}``: the ``image_size`` x
``image_size`` grayscale values (0-255, flat or as rows), for clients that already hold
decoded pixels; they skip the image decode, which dominates the cost of large batches.
"""
from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Mapping, Sequence
from itertools import chain

import numpy as np
import orjson
from django.conf import settings
from django.core.files import File
from PIL import Image

from core.errors import DomainError
from core.text import text_check, text_problem
from annotation.models import Project
from annotation.services.production import ProductionPayload
from learning import compiled_features, features

IMAGE_FIELDS = {"image_base64", "image", "pixels"}


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
    _unknown_keys(index, instance, IMAGE_FIELDS)
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


def _opened(data: bytes) -> Image.Image | None:
    """Open an image lazily (header only); None when Pillow cannot identify it."""
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None  # open_image below names the problem


def _fast_vector(image: Image.Image, size: int) -> np.ndarray | None:
    """Return the feature row of a PNG that needs no conversion, else None.

    An 8-bit grayscale PNG of exactly ``size`` x ``size`` without EXIF data is what the
    training featurizer would turn into its pixels / 255 after an identity transpose,
    conversion and resize, so decoding it once and skipping those steps gives the same
    row at half the cost. Anything else takes the general path.
    """
    if (image.format != "PNG" or image.mode != "L" or image.size != (size, size)
            or "exif" in image.info):
        return None
    try:
        image.load()
    except (OSError, SyntaxError, ValueError):
        return None  # the general path names the problem
    return np.frombuffer(image.tobytes(), dtype=np.uint8).astype(np.float32) / 255.0


def _pixel_rows(project: Project, instances: Sequence[Mapping]) -> np.ndarray | None:
    """Return the rows of a batch of ``pixels`` instances, or None if any is another shape."""
    if not all(type(inst) is dict and len(inst) == 1 and "pixels" in inst
               for inst in instances):
        return None
    width = project.image_size * project.image_size
    try:  # let numpy infer int64 or float64 (twice as fast), then convert once
        X = np.array([inst["pixels"] for inst in instances])
        X = X.astype(np.float32) if X.dtype.kind in "iuf" else None
    except (TypeError, ValueError, OverflowError):
        X = None
    if X is not None and X.shape[1:] in ((width,), (project.image_size, project.image_size)):
        X = X.reshape(len(X), width)
        if np.isfinite(X).all() and X.min() >= 0 and X.max() <= 255:
            return X / 255.0
    for i, inst in enumerate(instances):  # name the first bad one
        _pixel_row(project, i, inst["pixels"])
    raise InvalidInstance("instances: bad pixels")  # unreachable: one of them is bad


def _pixel_row(project: Project, index: int, pixels: object) -> np.ndarray:
    size = project.image_size
    try:
        row = np.asarray(pixels, dtype=np.float32)
    except (TypeError, ValueError):
        row = None
    if row is None or row.shape not in ((size * size,), (size, size)):
        raise InvalidInstance(
            f"instances[{index}]: 'pixels' must be {size * size} numbers (or {size} rows of "
            f"{size}), the grayscale values of a {size}x{size} image",
            detail={"index": index, "image_size": size},
        )
    if not np.isfinite(row).all() or row.min() < 0 or row.max() > 255:
        raise InvalidInstance(f"instances[{index}]: 'pixels' must lie in 0-255",
                              detail={"index": index})
    return row.reshape(-1) / 255.0


def _featurize_image(project: Project, instances: Sequence[Mapping]) -> np.ndarray:
    """Decode every image (Pillow's bomb guard on), within a pixel budget for the batch."""
    pixel_rows = _pixel_rows(project, instances)
    if pixel_rows is not None:
        return pixel_rows
    payloads = []
    for i, instance in enumerate(instances):
        if isinstance(instance, Mapping) and "pixels" in instance:
            _unknown_keys(i, instance, {"pixels"})
            payloads.append(_pixel_row(project, i, instance["pixels"]))
        else:
            payloads.append(_image_bytes(i, instance))
    budget = settings.PREDICT_MAX_TOTAL_PIXELS
    total = 0
    opened: list[Image.Image | None] = []
    for i, data in enumerate(payloads):
        image = None if isinstance(data, np.ndarray) else _opened(data)
        opened.append(image)
        if image is not None:
            total += image.size[0] * image.size[1]
        if total > budget:
            raise InvalidInstance(
                f"instances[{i}]: the batch decodes to more than {budget} pixels; send fewer "
                "or smaller images",
                detail={"index": i, "max_total_pixels": budget},
            )
    rows = []
    for i, (data, image) in enumerate(zip(payloads, opened)):
        if isinstance(data, np.ndarray):
            rows.append(data)
            continue
        row = _fast_vector(image, project.image_size) if image is not None else None
        if row is None:
            try:
                decoded = features.open_image(io.BytesIO(data),
                                              max_pixels=settings.MAX_IMAGE_PIXELS)
            except features.FeatureError as exc:
                raise InvalidInstance(f"instances[{i}]: {exc}", detail={"index": i})
            row = features.image_vector(decoded, size=project.image_size)
        rows.append(row)
    return np.vstack(rows)


def _text(index: int, instance: object) -> str:
    if not isinstance(instance, Mapping):
        raise InvalidInstance(f"instances[{index}]: expected an object", detail={"index": index})
    _unknown_keys(index, instance, {"text"})
    text = instance.get("text")
    if not isinstance(text, str):
        raise InvalidInstance(f"instances[{index}]: a text project needs 'text', a string",
                              detail={"index": index})
    # A text becomes a sample on feedback: the import's limit holds here too.
    return text_check(text, field=f"instances[{index}].text",
                      max_chars=settings.IMPORT_MAX_TEXT_CHARS, detail={"index": index})


def _featurize_text(project: Project, instances: Sequence[Mapping]) -> list[str]:
    """Return the texts: the artifact holds the TF-IDF fitted at train time."""
    if all(type(i) is dict and len(i) == 1 and "text" in i for i in instances):
        texts = [i["text"] for i in instances]
        if _plain_strings(texts, {str}):
            return texts
    return [_text(i, instance) for i, instance in enumerate(instances)]


_PLAIN = frozenset({int, float, bool, type(None), str})


def _plain_strings(values: list, kinds: set[type]) -> bool:
    """True when every value's type is in ``kinds`` and every string among them passes
    ``text_check`` (no NUL, valid Unicode, at most ``IMPORT_MAX_TEXT_CHARS``), checked for
    the whole batch at once in C; False sends the caller to the per-instance checks, which
    name the first bad one."""
    found = set(map(type, values))
    if not found <= kinds:
        return False
    if str not in found:
        return True
    strings = values if found == {str} else [v for v in values if type(v) is str]
    if max(map(len, strings)) > settings.IMPORT_MAX_TEXT_CHARS:
        return False
    joined = "".join(strings)
    return "\x00" not in joined and (joined.isascii() or text_problem(joined) is None)


def _row(project: Project, index: int, instance: object, columns: list[str] | None = None,
         column_set: frozenset[str] | None = None) -> dict:
    if not isinstance(instance, Mapping):
        raise InvalidInstance(f"instances[{index}]: expected an object of column -> value",
                              detail={"index": index})
    columns = list(project.columns) if columns is None else columns
    column_set = frozenset(columns) if column_set is None else column_set
    if len(instance) != len(column_set) or instance.keys() != column_set:
        missing = [c for c in columns if c not in instance]
        unknown = sorted(set(instance) - column_set)
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
        raise InvalidInstance(
            f"instances[{index}]: {'; '.join(parts)}; expected the columns {columns}",
            detail={"index": index, "missing": missing, "unknown": unknown, "columns": columns},
        )
    for column, value in instance.items():
        kind = type(value)
        if kind is float or kind is int or value is None:
            continue
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidInstance(
                f"instances[{index}]: column {column!r} must be a number, a string or null",
                detail={"index": index, "column": column},
            )
        if isinstance(value, str):
            text_check(value, field=f"instances[{index}].{column}",
                       max_chars=settings.IMPORT_MAX_TEXT_CHARS,
                       detail={"index": index, "column": column})
    return instance if type(instance) is dict else dict(instance)


def _featurize_tabular(project: Project, instances: Sequence[Mapping]) -> list[dict]:
    """Return the rows, checked: the artifact's featurizer (compiled when served) types
    them, refusing a numeric column's non-number through ``cell_refused``."""
    if not project.columns:
        raise InvalidInstance("this tabular project has no columns yet; import samples first")
    columns = list(project.columns)
    column_set = frozenset(columns)
    width = len(column_set)
    if all(type(i) is dict and len(i) == width and i.keys() == column_set for i in instances):
        if _plain_strings(list(chain.from_iterable(i.values() for i in instances)), _PLAIN):
            return list(instances)  # what _row returns for each, checked batch-wide
    return [_row(project, i, instance, columns, column_set)
            for i, instance in enumerate(instances)]


def cell_refused(exc: compiled_features.CellError) -> InvalidInstance:
    """The 400 for a value the compiled featurizer refused, naming instance and column."""
    return InvalidInstance(f"instances[{exc.index}]: column {exc.column!r} {exc.message}",
                           detail={"index": exc.index, "column": exc.column})


Featurizer = Callable[[Project, Sequence[Mapping]], object]

FEATURIZERS: dict[str, Featurizer] = {
    Project.Kind.IMAGE: _featurize_image,
    Project.Kind.TEXT: _featurize_text,
    Project.Kind.TABULAR: _featurize_tabular,
}


def _image_payload(project: Project, instance: Mapping) -> ProductionPayload:
    if isinstance(instance, Mapping) and "pixels" in instance:
        row = _pixel_row(project, 0, instance["pixels"])
        size = project.image_size
        pixels = np.rint(row.reshape(size, size) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        return ProductionPayload(image=buffer.getvalue())
    return ProductionPayload(image=_image_bytes(0, instance))


PAYLOADS: dict[str, Callable[[Project, Mapping], ProductionPayload]] = {
    Project.Kind.IMAGE: _image_payload,
    Project.Kind.TEXT: lambda project, instance: ProductionPayload(text=_text(0, instance)),
    Project.Kind.TABULAR: lambda project, instance: ProductionPayload(
        values=_row(project, 0, instance)),
}


def instance_payload(*, project: Project, instance: Mapping) -> ProductionPayload:
    """Check one API instance as predict would, and return what a sample stores of it.

    Raise ``InvalidInstance`` (400) when predict would refuse it. ``pixels`` instances are
    stored as the grayscale PNG they describe.
    """
    instances_featurize(project=project, instances=[instance])
    return PAYLOADS[project.kind](project, instance)


def instance_keepable(instance: Mapping, *, max_bytes: int) -> Mapping | None:
    """Return the instance to keep on its log row for later feedback, or None if too large.

    Kept as the JSON the client sent; a multipart file becomes ``image_base64``. The size
    is estimated from string lengths and value counts, without serializing.
    """
    if max_bytes <= 0 or not isinstance(instance, Mapping):
        return None
    if type(instance) is dict:  # parsed JSON: its exact size, in C
        try:
            return instance if len(orjson.dumps(instance)) <= max_bytes else None
        except TypeError:
            pass  # a multipart file: estimated below
    size = 0
    kept = {}
    for key, value in instance.items():
        if isinstance(value, str):
            size += len(value)
        elif isinstance(value, File):
            if value.size is None or value.size * 4 // 3 > max_bytes:
                return None
            value.seek(0)
            value = base64.b64encode(value.read()).decode()
            key = "image_base64"
            size += len(value)
        elif isinstance(value, list):
            size += 8 * len(value) if not value or not isinstance(value[0], list) else (
                8 * len(value) * len(value[0]))
        else:
            size += 16
        if size > max_bytes:
            return None
        kept[key] = value
    return kept


def instances_featurize(*, project: Project, instances: Sequence[Mapping]):
    """Return the model input of API instances, naming the first bad one if any.

    Pixel rows for images; texts, or column -> value rows with exactly the project's
    columns, for text and tabular projects, whose artifacts hold the featurizer fitted at
    train time.
    """
    featurizer = FEATURIZERS.get(project.kind)
    if featurizer is None:
        raise InvalidInstance(f"projects of kind {project.kind!r} cannot predict yet")
    if not instances:
        raise InvalidInstance("send at least one instance")
    return featurizer(project, instances)
