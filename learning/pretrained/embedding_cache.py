"""This machine's cache of pretrained embeddings, keyed by the content of each input.

The costly step of a pretrained featurizer (an ONNX run, 3-50 ms a row here) is done once
per distinct input and featurizer file: rows are kept under
``LOCAL_CACHE_DIR/embeddings/<featurizer>-<files digest>`` as segments of
``learning.feature_cache`` (plain numbers, pickles refused), with a 64-bit hash of the
input as id. So the rescoring chunks that workers run fill it for the whole pool, and
training, ranking, drift and suggestions that featurize the same samples read it back,
without any of them passing sample ids. Small batches (a predict request) only read it:
writing a segment per request would churn the cache. Outside Django (the bench, an
export loaded elsewhere) nothing is cached.

The whole ``embeddings`` directory is bounded by ``EMBEDDING_CACHE_MAX_MB``: before a
segment is written, the directories of files no longer installed (an older export) are
removed, then the oldest segments (by write time, of any featurizer; a merged segment goes
as one) until the new one fits. A batch larger than the bound is computed and not kept.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from learning import feature_cache
from learning.pretrained import files

logger = logging.getLogger(__name__)

# Batches with fewer new rows than this are computed and not written.
MIN_WRITE_ROWS = 32


def _settings():
    try:
        from django.conf import settings
    except ImportError:
        return None
    return settings if settings.configured else None


def cache_dir(name: str) -> Path | None:
    """The cache of featurizer ``name``'s embeddings, or None outside a Django process."""
    settings = _settings()
    if settings is None:
        return None
    return Path(settings.LOCAL_CACHE_DIR) / "embeddings" / f"{name}-{files.files_sha(name)}"


def max_bytes() -> int:
    settings = _settings()
    return int(float(getattr(settings, "EMBEDDING_CACHE_MAX_MB", 2048)) * 1024 * 1024)


def _segment_files(ids_path: Path) -> list[Path]:
    """The files of a segment, its ids file first: removing that one hides the segment."""
    return [ids_path, *(ids_path.with_name(ids_path.name.replace(".ids.npy", suffix))
                        for suffix in (".rows.npy", ".test.npy"))]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # removed meanwhile by another process
        return 0


def make_room(directory: Path, incoming: int, limit: int) -> bool:
    """Free space under ``directory``'s parent for ``incoming`` bytes within ``limit``:
    remove the stale directories of this featurizer, then the oldest segments. Return
    False (removing nothing) when ``incoming`` alone exceeds ``limit``."""
    if incoming > limit:
        return False
    root, prefix = directory.parent, directory.name.rsplit("-", 1)[0] + "-"
    if not root.is_dir():
        return True
    for other in root.iterdir():
        if other.is_dir() and other != directory and other.name.startswith(prefix):
            shutil.rmtree(other, ignore_errors=True)
    segments = []
    for ids_path in root.glob("*/*.ids.npy"):
        parts = _segment_files(ids_path)
        try:
            written = ids_path.stat().st_mtime_ns
        except OSError:
            continue
        segments.append((written, sum(_size(p) for p in parts), parts))
    total = sum(_size(p) for p in root.glob("*/*.npy*"))  # temporary files count too
    for _written, size, parts in sorted(segments, key=lambda s: s[0]):
        if total + incoming <= limit:
            break
        for path in parts:
            path.unlink(missing_ok=True)
        total -= size
        logger.info("embedding cache: evicted %s (%d bytes)", parts[0], size)
    return True


def _take(inputs, rows: np.ndarray):
    return inputs[rows] if isinstance(inputs, np.ndarray) else [inputs[i] for i in rows]


def through(name: str, inputs, keys: np.ndarray, compute) -> np.ndarray:
    """Return the embeddings of ``inputs`` (with content ``keys``): cached rows as found,
    the rest from ``compute(inputs subset)``, kept when there are enough of them."""
    directory = cache_dir(name)
    if directory is None or not len(keys):
        return compute(inputs)
    found, cached = feature_cache.rows_found(directory, keys)
    if found.all():
        return cached
    missing = np.flatnonzero(~found)
    fresh = compute(_take(inputs, missing))
    if cached is None:
        out = fresh if len(missing) == len(keys) else np.empty((len(keys), fresh.shape[1]),
                                                               dtype=fresh.dtype)
    else:
        out = cached.astype(fresh.dtype, copy=False)
    out[missing] = fresh
    if len(missing) >= MIN_WRITE_ROWS:
        ids, first = np.unique(keys[missing], return_index=True)
        try:
            if not make_room(directory, len(ids) * (fresh[0].nbytes + 8), max_bytes()):
                return out
            feature_cache.append(directory, ids, fresh[first])
        except OSError as exc:  # a full or read-only disk: serve the rows anyway
            logger.warning("could not keep embeddings in %s: %s", directory, exc)
    return out
