"""Save, hash and load pickled files: the only place in the code base that unpickles.

Every pickled file in the artifact storage (model artifacts, cached featurizers; the local
``ARTIFACT_ROOT`` or the bucket of ``STORAGE_URL``, see ``core/storage.py``) has the sha256
of its bytes recorded in the database when it is written: ``ModelVersion`` for model
artifacts, ``CachedFile`` for anything a worker keeps for later. Loading reads the bytes
once, checks them against that record and only then unpickles those same bytes, so a file
written by anyone else (whoever can write to the storage cannot also rewrite the database)
is refused before a byte of it is unpickled. Bytes fetched from a bucket are kept per
machine under ``LOCAL_CACHE_DIR/downloaded/<sha256>`` and checked again on every load.
Other caches are plain numbers (``.npy`` and ``.npz`` loaded with ``allow_pickle=False``),
which cannot run code, kept per machine under ``LOCAL_CACHE_DIR``.
"""
from __future__ import annotations

import hashlib
import io
import logging
import shutil
import uuid
from pathlib import Path, PurePosixPath

import joblib
import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from sklearn.base import ClassifierMixin

from core.storage import artifact_storage, storage_is_local
from learning.models import CachedFile

logger = logging.getLogger(__name__)


class ArtifactError(Exception):
    """An artifact is missing, or its bytes do not match the recorded sha256."""


def artifact_root() -> Path:
    """The local artifact folder (where the artifact storage is the local disk)."""
    return Path(settings.ARTIFACT_ROOT)


def local_cache_root() -> Path:
    """This machine's caches, rebuilt from the database or the storage when missing."""
    return Path(settings.LOCAL_CACHE_DIR)


def _checked_name(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or "\\" in path:
        raise ArtifactError(f"artifact path {path!r} is outside the artifact storage")
    return path


def _write(data: bytes, relative: str) -> tuple[str, str]:
    """Store ``data`` as ``relative`` (a fresh name); return (name stored, sha256)."""
    name = artifact_storage().save(_checked_name(relative), ContentFile(data))
    return name, hashlib.sha256(data).hexdigest()


def delete(path: str) -> None:
    """Remove a stored artifact (missing is fine)."""
    try:
        artifact_storage().delete(_checked_name(path))
    except (OSError, ArtifactError) as exc:
        logger.warning("could not delete artifact %r: %s", path, exc)


def _pickled(obj: object, **options) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, **options)
    return buffer.getvalue()


def _read(path: str, sha256: str) -> bytes:
    """The bytes of ``path``: from this machine's download cache when the storage is remote."""
    storage = artifact_storage()
    cached = None if storage_is_local(storage) else local_cache_root() / "downloaded" / sha256
    if cached is not None:
        try:
            return cached.read_bytes()
        except OSError:
            pass
    try:
        with storage.open(path, "rb") as stream:
            data = stream.read()
    except Exception as exc:  # noqa: BLE001 (OSError locally; botocore's errors from a bucket)
        raise ArtifactError(f"cannot read artifact {path!r}: {exc}") from exc
    if cached is not None and hashlib.sha256(data).hexdigest() == sha256:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{sha256}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
    return data


def _verified_bytes(path: str, sha256: str) -> bytes:
    """The bytes of the stored file ``path`` if they hash to ``sha256``."""
    _checked_name(path)
    if len(sha256) != 64:
        raise ArtifactError(f"artifact {path!r} has no recorded sha256")
    data = _read(path, sha256)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(f"artifact {path!r} sha256 {actual} does not match {sha256}")
    return data


def _verified_load(path: str, sha256: str) -> object:
    """Unpickle the stored file ``path`` if its bytes hash to ``sha256``.

    The one loader of pickled files: the bytes are read once, hashed, and the same bytes
    are unpickled, so the file cannot change between the check and the load.
    """
    return joblib.load(io.BytesIO(_verified_bytes(path, sha256)))


def save(estimator: ClassifierMixin, *, project_id: int, number: int) -> tuple[str, str]:
    """Write the estimator and return (path relative to the artifact root, sha256)."""
    relative = f"{project_id}/v{number}-{uuid.uuid4().hex[:12]}.joblib"
    return _write(_pickled(estimator, compress=3), relative)


def load(*, path: str, sha256: str) -> ClassifierMixin:
    """Load an artifact we wrote, refusing it unless its sha256 matches the recorded one."""
    return _verified_load(path, sha256)


def numbers_save(arrays: dict[str, np.ndarray], *, relative: str) -> tuple[str, str]:
    """Store plain arrays as an ``.npz`` named ``relative``; return (name stored, sha256)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return _write(buffer.getvalue(), relative)


def numbers_load(*, path: str, sha256: str) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of plain arrays (never pickled objects) whose bytes hash to
    ``sha256``; raise ``ArtifactError`` otherwise."""
    data = _verified_bytes(path, sha256)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"artifact {path!r} is not a file of plain arrays: {exc}") from exc


def _featurizer_folder(project_id: int) -> str:
    return f"featurizers/{project_id}"


def featurizer_cached(*, project_id: int, key: str):
    """Return the featurizer fitted for ``key`` by an earlier retrain, or None.

    None too when its file is gone or fails its sha256 check (logged, and forgotten, so the
    caller refits and stores a fresh one): a file nobody recorded is never unpickled.
    """
    record = CachedFile.objects.filter(project_id=project_id, kind=CachedFile.Kind.FEATURIZER,
                                       key=key).first()
    if record is None:
        return None
    try:
        return _verified_load(record.path, record.sha256)
    except ArtifactError as exc:
        level = logging.INFO if "cannot read" in str(exc) else logging.ERROR
        logger.log(level, "refusing the cached featurizer of project %s: %s; refitting",
                   project_id, exc)
        CachedFile.objects.filter(pk=record.pk, sha256=record.sha256).delete()
        return None


def featurizer_rows_dir(*, project_id: int, key: str) -> Path:
    """Where this machine keeps the rows that featurizer ``key`` made of the project's texts."""
    return local_cache_root() / _featurizer_folder(project_id) / f"{key}.rows"


def featurizer_store(featurizer, *, project_id: int, key: str) -> None:
    """Keep a fitted featurizer for the next retrain over the same samples, with its sha256
    in the database; older keys, and the rows they made on this machine, go."""
    folder = _featurizer_folder(project_id)
    name, sha256 = _write(_pickled(featurizer), f"{folder}/{key}.{uuid.uuid4().hex[:12]}.joblib")
    CachedFile.objects.update_or_create(
        project_id=project_id, kind=CachedFile.Kind.FEATURIZER, key=key,
        defaults={"path": name, "sha256": sha256},
    )
    CachedFile.objects.filter(project_id=project_id, kind=CachedFile.Kind.FEATURIZER).exclude(
        key=key).delete()
    storage = artifact_storage()
    try:
        _dirs, files = storage.listdir(folder)
    except OSError:
        files = []
    for old in files:
        # Only finished featurizer files: a .tmp may be another worker's file in the making.
        if old.endswith(".joblib") and old != PurePosixPath(name).name:
            delete(f"{folder}/{old}")
    rows_root = local_cache_root() / folder
    if rows_root.is_dir():
        for old in rows_root.glob("*.rows"):
            if old.name != f"{key}.rows":
                shutil.rmtree(old, ignore_errors=True)
