"""Save, hash and load pickled files: the only place in the code base that unpickles.

Every pickled file under ``ARTIFACT_ROOT`` (model artifacts, cached featurizers) has the
sha256 of its bytes recorded in the database when it is written: ``ModelVersion`` for
model artifacts, ``CachedFile`` for anything a worker keeps for itself. Loading reads the
bytes once, checks them against that record and only then unpickles those same bytes, so a
file written by anyone else (whoever can write to the artifact root cannot also rewrite
the database) is refused before a byte of it is unpickled. Other caches under the root are
plain numbers (``.npy`` and ``.npz`` loaded with ``allow_pickle=False``), which cannot run
code.
"""
from __future__ import annotations

import hashlib
import io
import logging
import shutil
import uuid
from pathlib import Path

import joblib
from django.conf import settings
from sklearn.base import ClassifierMixin

from learning.models import CachedFile

logger = logging.getLogger(__name__)


class ArtifactError(Exception):
    """An artifact is missing, or its bytes do not match the recorded sha256."""


def artifact_root() -> Path:
    return Path(settings.ARTIFACT_ROOT)


def _write(data: bytes, relative: str) -> str:
    """Write ``data`` at ``relative`` under the root (atomically); return its sha256."""
    path = artifact_root() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def _pickled(obj: object, **options) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, **options)
    return buffer.getvalue()


def _verified_load(path: str, sha256: str) -> object:
    """Unpickle the file at ``path`` (relative to the root) if its bytes hash to ``sha256``.

    The one loader of pickled files: the bytes are read once, hashed, and the same bytes
    are unpickled, so the file cannot change between the check and the load.
    """
    root = artifact_root().resolve()
    full = (root / path).resolve()
    if root not in full.parents:
        raise ArtifactError(f"artifact path {path!r} is outside the artifact root")
    if len(sha256) != 64:
        raise ArtifactError(f"artifact {path!r} has no recorded sha256")
    try:
        data = full.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path!r}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(f"artifact {path!r} sha256 {actual} does not match {sha256}")
    return joblib.load(io.BytesIO(data))


def save(estimator: ClassifierMixin, *, project_id: int, number: int) -> tuple[str, str]:
    """Write the estimator and return (path relative to the artifact root, sha256)."""
    relative = f"{project_id}/v{number}-{uuid.uuid4().hex[:12]}.joblib"
    return relative, _write(_pickled(estimator, compress=3), relative)


def load(*, path: str, sha256: str) -> ClassifierMixin:
    """Load an artifact we wrote, refusing it unless its sha256 matches the recorded one."""
    return _verified_load(path, sha256)


def _featurizer_dir(project_id: int) -> Path:
    return artifact_root() / "featurizers" / str(project_id)


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
    """Where the rows that featurizer ``key`` made of the project's texts are kept."""
    return _featurizer_dir(project_id) / f"{key}.rows"


def featurizer_store(featurizer, *, project_id: int, key: str) -> None:
    """Keep a fitted featurizer for the next retrain over the same samples, with its sha256
    in the database; older keys, and the rows they made, go."""
    relative = f"featurizers/{project_id}/{key}.{uuid.uuid4().hex[:12]}.joblib"
    sha256 = _write(_pickled(featurizer), relative)
    CachedFile.objects.update_or_create(
        project_id=project_id, kind=CachedFile.Kind.FEATURIZER, key=key,
        defaults={"path": relative, "sha256": sha256},
    )
    CachedFile.objects.filter(project_id=project_id, kind=CachedFile.Kind.FEATURIZER).exclude(
        key=key).delete()
    kept = {Path(relative).name, f"{key}.rows"}
    for old in _featurizer_dir(project_id).iterdir():
        if old.name in kept or old.name.endswith(".tmp"):
            continue  # a .tmp may be another worker's file in the making
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
