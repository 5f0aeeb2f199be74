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
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from learning import feature_cache
from learning.pretrained import files

logger = logging.getLogger(__name__)

# Batches with fewer new rows than this are computed and not written.
MIN_WRITE_ROWS = 32


def cache_dir(name: str) -> Path | None:
    """The cache of featurizer ``name``'s embeddings, or None outside a Django process."""
    try:
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured:
        return None
    return Path(settings.LOCAL_CACHE_DIR) / "embeddings" / f"{name}-{files.files_sha(name)}"


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
            feature_cache.append(directory, ids, fresh[first])
        except OSError as exc:  # a full or read-only disk: serve the rows anyway
            logger.warning("could not keep embeddings in %s: %s", directory, exc)
    return out
