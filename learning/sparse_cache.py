"""Featurized rows of texts (sparse TF-IDF), kept on disk per fitted featurizer.

Turning a text into its word and character n-gram TF-IDF row costs far more than scoring
it, and the row only changes when the featurizer is refitted, so a rescoring transforms
each text once and later rescorings read the rows back. One directory per featurizer;
each write adds one segment, ``<name>.csr.npz`` then ``<name>.ids.npy`` (ascending ids),
so a segment whose ids file exists is complete. No Django imports.

Both files are plain numbers (``np.load`` and ``sp.load_npz`` with pickles refused), so a
file planted here cannot run code; one that does not load, or does not match its ids,
empties the directory and the rows are transformed again.
"""
from __future__ import annotations

import logging
import shutil
import uuid
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)


def put(directory: Path, ids: np.ndarray, rows: sp.csr_matrix) -> None:
    """Store ``rows`` (one per id of ``ids``, ascending) as a new segment."""
    if len(ids) == 0:
        return
    directory.mkdir(parents=True, exist_ok=True)
    name = f"seg-{int(ids[0]):012d}-{uuid.uuid4().hex[:8]}"
    tmp = directory / f"{name}.tmp.npz"
    sp.save_npz(tmp, sp.csr_matrix(rows), compressed=False)
    tmp.replace(directory / f"{name}.csr.npz")
    tmp = directory / f"{name}.ids.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, np.asarray(ids, dtype=np.int64))
    tmp.replace(directory / f"{name}.ids.npy")


def get(directory: Path, ids: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix | None]:
    """Return (mask of ``ids`` found, their rows in the order of ``ids[mask]``).

    Only segments whose id range meets ``ids`` are read.
    """
    ids = np.asarray(ids, dtype=np.int64)
    found = np.zeros(len(ids), dtype=bool)
    if not len(ids) or not directory.exists():
        return found, None
    where = np.empty(len(ids), dtype=np.int64)  # row of each found id in the stacked parts
    parts, offset = [], 0
    for ids_path in sorted(directory.glob("*.ids.npy")):
        try:
            seg_ids = np.load(ids_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            return _dropped(directory, ids, f"{ids_path.name}: {exc}")
        if seg_ids.dtype != np.int64 or seg_ids.ndim != 1:
            return _dropped(directory, ids, f"{ids_path.name}: not ids this cache wrote")
        if not len(seg_ids) or seg_ids[0] > ids[-1] or seg_ids[-1] < ids[0]:
            continue
        at = np.minimum(np.searchsorted(seg_ids, ids), len(seg_ids) - 1)
        hit = (seg_ids[at] == ids) & ~found
        if not hit.any():
            continue
        csr_path = ids_path.with_name(ids_path.name.replace(".ids.npy", ".csr.npz"))
        try:
            matrix = sp.load_npz(csr_path)  # refuses pickled (object) arrays
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            return _dropped(directory, ids, f"{csr_path.name}: {exc}")
        if matrix.shape[0] != len(seg_ids) or (parts and matrix.shape[1] != parts[0].shape[1]):
            return _dropped(directory, ids, f"{csr_path.name}: its shape does not match")
        parts.append(matrix.tocsr()[at[hit]])
        where[hit] = offset + np.arange(int(hit.sum()))
        offset += int(hit.sum())
        found |= hit
    if not parts:
        return found, None
    return found, sp.vstack(parts, format="csr")[where[found]]


def _dropped(directory: Path, ids: np.ndarray, reason: str) -> tuple[np.ndarray, None]:
    """Empty a directory with a segment that cannot be read; report nothing found."""
    logger.error("featurized rows in %s are unreadable (%s); emptying it", directory, reason)
    shutil.rmtree(directory, ignore_errors=True)
    return np.zeros(len(ids), dtype=bool), None
