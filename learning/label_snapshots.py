"""The label ids a version was trained on, as compact bytes, and their sha256; no ORM.

The sha256 is the one ``ModelVersion.label_snapshot_sha256`` has always held: of the
sorted ids joined by commas. Bytes: the sorted ids as little-endian int64 deltas (the
first one as is), zlib-compressed, so 100,000 nearly consecutive ids take a few KB.
"""
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable

import numpy as np


class SnapshotMismatch(Exception):
    """Stored label ids do not hash to the version's recorded snapshot sha256."""


def snapshot_sha256(label_ids: Iterable[int]) -> str:
    """The sha256 of the sorted ids, as training records it."""
    return hashlib.sha256(",".join(map(str, sorted(label_ids))).encode()).hexdigest()


def encode(label_ids: Iterable[int]) -> bytes:
    ids = np.sort(np.fromiter(label_ids, dtype=np.int64))
    deltas = np.diff(ids, prepend=np.int64(0)).astype("<i8")
    return zlib.compress(deltas.tobytes(), 6)


def decode(data: bytes, *, sha256: str) -> np.ndarray:
    """Return the sorted ids ``data`` holds, if they hash to ``sha256``; else raise."""
    deltas = np.frombuffer(zlib.decompress(bytes(data)), dtype="<i8")
    ids = np.cumsum(deltas, dtype=np.int64)
    actual = snapshot_sha256(ids.tolist())
    if actual != sha256:
        raise SnapshotMismatch(f"the recorded label ids hash to {actual}, not {sha256}")
    return ids
