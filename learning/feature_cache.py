"""Per-project cache of model input rows on disk, so a retrain does not re-read raw samples.

One directory per (project, cache key) under ``ARTIFACT_ROOT/features``. Each append writes
one segment: ``<name>.rows.npy`` then ``<name>.ids.npy`` (ascending sample ids), so a segment
whose ids file exists is complete. Segments are memory-mapped: a scoring chunk reads only
its own rows. Ids seen in two segments (two workers appended the same new samples) are
read once. No Django imports: callers pass the directory and the rows.

Segments are plain numbers, loaded with ``allow_pickle=False``: a file planted in the
directory cannot run code. One that does not load as a 1-d int64 ids array with as many
rows beside it (truncated, tampered, an object array) empties the cache, which the caller
then refills from the database, instead of failing every retrain.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MAX_SEGMENTS = 16


def _segments(directory: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    if not directory.exists():
        return []
    out = []
    for ids_path in sorted(directory.glob("*.ids.npy")):
        rows_path = ids_path.with_name(ids_path.name.replace(".ids.npy", ".rows.npy"))
        try:
            ids = np.load(ids_path, mmap_mode="r", allow_pickle=False)
            rows = np.load(rows_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            return _dropped(directory, f"{ids_path.name}: {exc}")
        if (ids.dtype != np.int64 or ids.ndim != 1 or rows.ndim < 1 or len(rows) != len(ids)
                or rows.dtype.kind not in "biuf"):
            return _dropped(directory, f"{ids_path.name}: not a segment this cache wrote")
        out.append((ids, rows))
    return out


def _dropped(directory: Path, reason: str) -> list:
    """Empty a cache with a segment that cannot be read; it is refilled from the database."""
    logger.error("feature cache %s is unreadable (%s); emptying it", directory, reason)
    for path in directory.glob("*.npy"):
        path.unlink(missing_ok=True)
    return []


def max_id(directory: Path) -> int:
    """Return the highest cached sample id, or 0 when the cache is empty."""
    return max((int(ids[-1]) for ids, _rows in _segments(directory) if len(ids)), default=0)


def rows_between(directory: Path, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (ids, rows) of cached samples with ``lo <= id <= hi``, ids ascending."""
    ids_parts, row_parts = [], []
    for ids, rows in _segments(directory):
        a, b = np.searchsorted(ids, lo, "left"), np.searchsorted(ids, hi, "right")
        if b > a:
            ids_parts.append(np.asarray(ids[a:b]))
            row_parts.append(np.asarray(rows[a:b]))
    if not ids_parts:
        return np.empty(0, dtype=np.int64), None
    ids = np.concatenate(ids_parts)
    rows = np.concatenate(row_parts)
    if len(ids_parts) > 1:
        ids, first = np.unique(ids, return_index=True)
        rows = rows[first]
    return ids, rows


def rows_of(directory: Path, ids: np.ndarray) -> np.ndarray | None:
    """Return the rows of ``ids`` (in that order), or None if some id is not cached.

    Reads only the pages of the wanted rows from each memory-mapped segment.
    """
    ids = np.asarray(ids, dtype=np.int64)
    out = None
    found = np.zeros(len(ids), dtype=bool)
    for seg_ids, rows in _segments(directory):
        if not len(seg_ids):
            continue
        at = np.minimum(np.searchsorted(seg_ids, ids), len(seg_ids) - 1)
        hit = (seg_ids[at] == ids) & ~found
        if hit.any():
            if out is None:
                out = np.empty((len(ids), *rows.shape[1:]), dtype=rows.dtype)
            out[hit] = rows[at[hit]]
            found |= hit
    return out if found.all() and len(ids) else None


def load(directory: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (ids ascending, rows) of the whole cache; rows None when it is empty."""
    return rows_between(directory, np.iinfo(np.int64).min, np.iinfo(np.int64).max)


def append(directory: Path, ids: np.ndarray, rows: np.ndarray) -> None:
    """Write one segment of ``ids`` (ascending) and their ``rows``; compact when many."""
    if len(ids) == 0:
        return
    directory.mkdir(parents=True, exist_ok=True)
    name = f"seg-{int(ids[0]):012d}-{uuid.uuid4().hex[:8]}"
    for suffix, data in ((".rows.npy", rows), (".ids.npy", np.asarray(ids, dtype=np.int64))):
        tmp = directory / f"{name}{suffix}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, data)
        tmp.replace(directory / f"{name}{suffix}")
    old = sorted(directory.glob("*.ids.npy"))
    if len(old) > MAX_SEGMENTS:
        all_ids, all_rows = load(directory)
        _replace(directory, old, all_ids, all_rows)


def _replace(directory: Path, old: list[Path], ids: np.ndarray, rows: np.ndarray) -> None:
    name = f"seg-{int(ids[0]):012d}-{uuid.uuid4().hex[:8]}"
    for suffix, data in ((".rows.npy", rows), (".ids.npy", ids)):
        tmp = directory / f"{name}{suffix}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, data)
        tmp.replace(directory / f"{name}{suffix}")
    for ids_path in old:
        ids_path.unlink(missing_ok=True)
        ids_path.with_name(ids_path.name.replace(".ids.npy", ".rows.npy")).unlink(missing_ok=True)
