"""Per-project cache of model input rows on disk, so a retrain does not re-read raw samples.

One directory per (project, cache key) under ``ARTIFACT_ROOT/features``. Each append writes
one segment: ``<name>.rows.npy``, ``<name>.test.npy`` (whether each sample is in the test
split, which never changes; segments of older versions have none) then ``<name>.ids.npy``
(ascending sample ids), so a segment whose ids file exists is complete. Segments are memory-mapped: a scoring chunk reads only
its own rows. Ids seen in two segments (two workers appended the same new samples) are
read once. No Django imports: callers pass the directory and the rows.

Rows picked by id (a featurizer's random subsample, the labeled rows) are read through a
map of one window of the file at a time (``_take``), closed after it: a map's pages count
in the process's resident memory until it is closed, and the kernel maps up to 64 KB of
cached file around each page touched, so 100k random rows of a freshly filled 10M-row
cache (5 GB) read through one map of the file made the whole file resident (the 4.7 GB
peak of the worker that trained the first version at 10M).

Segments are plain numbers, loaded with ``allow_pickle=False``: a file planted in the
directory cannot run code. One that does not load as a 1-d int64 ids array with as many
rows beside it (truncated, tampered, an object array) empties the cache, which the caller
then refills from the database, instead of failing every retrain.
"""
from __future__ import annotations

import logging
import mmap
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MAX_SEGMENTS = 16
# Rows copied at a time when segments are merged.
COMPACT_BLOCK = 100_000
# Bytes of a rows file mapped at a time when rows are picked from it by position.
TAKE_WINDOW_BYTES = 16 << 20


def _segments(directory: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Return (ids, rows, test) of each complete segment, memory-mapped; ``test`` (which
    samples are in the test split, fixed at import) is None in segments written without."""
    if not directory.exists():
        return []
    out = []
    for ids_path in sorted(directory.glob("*.ids.npy")):
        rows_path = ids_path.with_name(ids_path.name.replace(".ids.npy", ".rows.npy"))
        test_path = ids_path.with_name(ids_path.name.replace(".ids.npy", ".test.npy"))
        try:
            ids = np.load(ids_path, mmap_mode="r", allow_pickle=False)
            rows = np.load(rows_path, mmap_mode="r", allow_pickle=False)
            test = (np.load(test_path, mmap_mode="r", allow_pickle=False)
                    if test_path.exists() else None)
        except (OSError, ValueError, EOFError) as exc:
            return _dropped(directory, f"{ids_path.name}: {exc}")
        if (ids.dtype != np.int64 or ids.ndim != 1 or rows.ndim < 1 or len(rows) != len(ids)
                or rows.dtype.kind not in "biuf" or test is not None and (
                    test.dtype != np.bool_ or test.shape != ids.shape)):
            return _dropped(directory, f"{ids_path.name}: not a segment this cache wrote")
        out.append((ids, rows, test))
    return out


def _dropped(directory: Path, reason: str) -> list:
    """Empty a cache with a segment that cannot be read; it is refilled from the database."""
    logger.error("feature cache %s is unreadable (%s); emptying it", directory, reason)
    for path in directory.glob("*.npy"):
        path.unlink(missing_ok=True)
    return []


def max_id(directory: Path) -> int:
    """Return the highest cached sample id, or 0 when the cache is empty."""
    return max((int(ids[-1]) for ids, _rows, _test in _segments(directory) if len(ids)),
               default=0)


def rows_between(directory: Path, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (ids, rows) of cached samples with ``lo <= id <= hi``, ids ascending."""
    ids, rows, _test = rows_and_test_between(directory, lo, hi)
    return ids, rows


def rows_and_test_between(directory: Path, lo: int, hi: int):
    """Return (ids ascending, rows, test) of cached samples with ``lo <= id <= hi``: rows
    None when there are none, ``test`` None when some segment does not say."""
    parts = []
    for ids, rows, test in _segments(directory):
        a, b = np.searchsorted(ids, lo, "left"), np.searchsorted(ids, hi, "right")
        if b > a:
            parts.append((np.asarray(ids[a:b]), np.asarray(rows[a:b]),
                          None if test is None else np.asarray(test[a:b])))
    if not parts:
        return np.empty(0, dtype=np.int64), None, None
    ids = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    test = (None if any(p[2] is None for p in parts)
            else np.concatenate([p[2] for p in parts]))
    if len(parts) > 1:
        ids, first = np.unique(ids, return_index=True)
        rows = rows[first]
        test = None if test is None else test[first]
    return ids, rows, test


def cached_ids(directory: Path) -> np.ndarray:
    """Return the ids of every cached sample, ascending, each once."""
    parts = [np.asarray(ids) for ids, _rows, _test in _segments(directory)]
    if len(parts) == 1:
        return parts[0].copy()
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def pool_ids(directory: Path) -> np.ndarray | None:
    """Return the ids of the cached samples outside the test split (ascending, each once),
    or None when a segment does not say which are test samples."""
    parts = []
    for ids, _rows, test in _segments(directory):
        if test is None:
            return None
        parts.append(np.asarray(ids)[~np.asarray(test)])
    if len(parts) == 1:
        return parts[0]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def rows_found(directory: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (found mask, rows) of ``ids`` (in that order); rows of ids not found are
    undefined, and rows is None when none is found.

    Reads only the pages of the wanted rows from each memory-mapped segment.
    """
    ids = np.asarray(ids, dtype=np.int64)
    out = None
    found = np.zeros(len(ids), dtype=bool)
    for seg_ids, rows, _test in _segments(directory):
        if not len(seg_ids):
            continue
        at = np.minimum(np.searchsorted(seg_ids, ids), len(seg_ids) - 1)
        hit = (seg_ids[at] == ids) & ~found
        if hit.any():
            if out is None:
                out = np.empty((len(ids), *rows.shape[1:]), dtype=rows.dtype)
            _take(rows, at[hit], out, np.flatnonzero(hit))
            found |= hit
    return found, out


def _take(rows: np.ndarray, positions: np.ndarray, out: np.ndarray, where: np.ndarray) -> None:
    """Set ``out[where] = rows[positions]``, mapping at most ``TAKE_WINDOW_BYTES`` of a
    memory-mapped ``rows`` file at a time and closing each map before the next: resident
    memory stays one window whatever the size of the file and however spread the rows."""
    if not isinstance(rows, np.memmap) or rows.filename is None or not len(positions):
        out[where] = rows[positions]
        return
    order = np.argsort(positions, kind="stable")
    positions, where = positions[order], where[order]
    row_items = int(np.prod(rows.shape[1:], dtype=np.int64))
    row_bytes = max(1, row_items * rows.dtype.itemsize)
    per_window = max(1, TAKE_WINDOW_BYTES // row_bytes)
    starts = np.flatnonzero(np.diff(positions // per_window, prepend=-1))
    with open(rows.filename, "rb") as fh:
        for a, b in zip(starts, [*starts[1:], len(positions)]):
            first, last = int(positions[a]), int(positions[b - 1]) + 1
            begin = rows.offset + first * row_bytes
            aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
            window = mmap.mmap(fh.fileno(), rows.offset + last * row_bytes - aligned,
                               offset=aligned, access=mmap.ACCESS_READ)
            try:
                view = np.frombuffer(window, dtype=rows.dtype, count=(last - first) * row_items,
                                     offset=begin - aligned).reshape(last - first, *rows.shape[1:])
                out[where[a:b]] = view[positions[a:b] - first]
            finally:
                view = None  # no view may outlive the map
                window.close()


def rows_of(directory: Path, ids: np.ndarray) -> np.ndarray | None:
    """Return the rows of ``ids`` (in that order), or None if some id is not cached."""
    found, out = rows_found(directory, ids)
    return out if found.all() and len(found) else None


def load(directory: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (ids ascending, rows) of the whole cache; rows None when it is empty."""
    return rows_between(directory, np.iinfo(np.int64).min, np.iinfo(np.int64).max)


def _segment_name(first_id: int) -> str:
    return f"seg-{first_id:012d}-{uuid.uuid4().hex[:8]}"


def _publish(directory: Path, name: str, ids: np.ndarray, test: np.ndarray | None) -> None:
    """Write a segment's test flags and ids beside its complete rows file: the segment now
    exists."""
    if test is not None:
        tmp = directory / f"{name}.test.npy.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(test, dtype=np.bool_))
        tmp.replace(directory / f"{name}.test.npy")
    tmp = directory / f"{name}.ids.npy.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, np.asarray(ids, dtype=np.int64))
    tmp.replace(directory / f"{name}.ids.npy")


def append(directory: Path, ids: np.ndarray, rows: np.ndarray,
           test: np.ndarray | None = None) -> None:
    """Write one segment of ``ids`` (ascending), their ``rows`` and whether each is in the
    test split; compact when many."""
    if len(ids) == 0:
        return
    directory.mkdir(parents=True, exist_ok=True)
    name = _segment_name(int(ids[0]))
    tmp = directory / f"{name}.rows.npy.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, rows)
    tmp.replace(directory / f"{name}.rows.npy")
    _publish(directory, name, ids, test)
    _compact_if_many(directory)


def _rows_header(fh, n_rows: int, width: int) -> None:
    np.lib.format.write_array_header_1_0(fh, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)),
        "fortran_order": False, "shape": (n_rows, width)})


def append_blocks(directory: Path, n_rows: int, width: int,
                  blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> int:
    """Write one segment of at most ``n_rows`` float rows from ``blocks`` of (ids, rows,
    test), ids ascending across blocks; return the rows written.

    Rows are written to the file a block at a time (plain writes, not a memory map, whose
    written pages would count as the process's own): memory stays one block whatever the
    size of the table. Nothing is kept if ``blocks`` raises.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"fill-{uuid.uuid4().hex[:8]}.rows.npy.tmp"
    all_ids = np.empty(n_rows, dtype=np.int64)
    all_test = np.empty(n_rows, dtype=np.bool_)
    done = 0
    try:
        with open(tmp, "wb") as fh:
            _rows_header(fh, n_rows, width)
            start = fh.tell()
            for ids, rows, test in blocks:
                take = min(len(ids), n_rows - done)
                np.ascontiguousarray(rows[:take], dtype=np.float64).tofile(fh)
                all_ids[done:done + take] = ids[:take]
                all_test[done:done + take] = test[:take]
                done += take
        if 0 < done < n_rows:  # samples deleted since they were counted: keep what came
            tmp = _shortened(tmp, start, done, width)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if done == 0:
        tmp.unlink(missing_ok=True)
        return 0
    name = _segment_name(int(all_ids[0]))
    tmp.replace(directory / f"{name}.rows.npy")
    _publish(directory, name, all_ids[:done], all_test[:done])
    _compact_if_many(directory)
    return done


def _shortened(path: Path, start: int, n_rows: int, width: int) -> Path:
    """Copy the first ``n_rows`` rows of the rows file ``path`` (data from byte ``start``)
    into a file whose header says so; remove ``path``."""
    out = path.with_name(path.name.replace("fill-", "short-"))
    left = n_rows * width * 8
    with open(path, "rb") as src, open(out, "wb") as dst:
        _rows_header(dst, n_rows, width)
        src.seek(start)
        while left:
            piece = src.read(min(left, 1 << 24))
            if not piece:
                raise OSError(f"{path} is shorter than its {n_rows} rows")
            dst.write(piece)
            left -= len(piece)
    path.unlink()
    return out


def _compact_if_many(directory: Path) -> None:
    """Merge every segment into one when there are more than ``MAX_SEGMENTS``.

    Written a block at a time: a 10-million-row cache is merged in the memory of its ids
    and one block, not of its rows.
    """
    old = sorted(directory.glob("*.ids.npy"))
    if len(old) <= MAX_SEGMENTS:
        return
    segments = _segments(directory)
    if not segments:
        return
    every = np.concatenate([np.asarray(ids) for ids, _rows, _test in segments])
    which = np.repeat(np.arange(len(segments)), [len(ids) for ids, _rows, _test in segments])
    at = np.concatenate([np.arange(len(ids)) for ids, _rows, _test in segments])
    test = (None if any(t is None for _i, _r, t in segments)
            else np.concatenate([np.asarray(t) for _i, _r, t in segments]))
    ids, first = np.unique(every, return_index=True)
    test = None if test is None else test[first]
    which, at = which[first], at[first]
    del every, first
    shape, dtype = segments[0][1].shape[1:], segments[0][1].dtype
    name = _segment_name(int(ids[0]))
    tmp = directory / f"{name}.rows.npy.tmp"
    with open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {
            "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": (len(ids), *shape)})
        for start in range(0, len(ids), COMPACT_BLOCK):
            stop = min(start + COMPACT_BLOCK, len(ids))
            block = np.empty((stop - start, *shape), dtype=dtype)
            for k, (_ids, rows, _test) in enumerate(segments):
                mine = np.flatnonzero(which[start:stop] == k)
                if len(mine):
                    _take(rows, at[start:stop][mine], block, mine)
            block.tofile(fh)
    tmp.replace(directory / f"{name}.rows.npy")
    _publish(directory, name, ids, test)
    for ids_path in old:
        ids_path.unlink(missing_ok=True)
        for suffix in (".rows.npy", ".test.npy"):
            ids_path.with_name(ids_path.name.replace(".ids.npy", suffix)).unlink(missing_ok=True)
