"""Save, hash and load fitted estimators; the only place that deserializes model files."""
from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from pathlib import Path

import joblib
from django.conf import settings
from sklearn.base import ClassifierMixin


class ArtifactError(Exception):
    """An artifact is missing, or its bytes do not match the recorded sha256."""


def artifact_root() -> Path:
    return Path(settings.ARTIFACT_ROOT)


def save(estimator: ClassifierMixin, *, project_id: int, number: int) -> tuple[str, str]:
    """Write the estimator and return (path relative to the artifact root, sha256)."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    data = buffer.getvalue()
    relative = f"{project_id}/v{number}-{uuid.uuid4().hex[:12]}.joblib"
    path = artifact_root() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return relative, hashlib.sha256(data).hexdigest()


def featurizer_cached(*, project_id: int, key: str):
    """Return the featurizer fitted for ``key`` by an earlier retrain, or None."""
    path = artifact_root() / "featurizers" / str(project_id) / f"{key}.joblib"
    try:
        return joblib.load(path)
    except (OSError, EOFError, ValueError):
        return None


def featurizer_rows_dir(*, project_id: int, key: str) -> Path:
    """Where the rows that featurizer ``key`` made of the project's texts are kept."""
    return artifact_root() / "featurizers" / str(project_id) / f"{key}.rows"


def featurizer_store(featurizer, *, project_id: int, key: str) -> None:
    """Keep a fitted featurizer for the next retrain over the same samples; older keys,
    and the rows they made, go."""
    directory = artifact_root() / "featurizers" / str(project_id)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{key}.{uuid.uuid4().hex[:8]}.tmp"
    joblib.dump(featurizer, tmp)
    tmp.replace(directory / f"{key}.joblib")
    for old in directory.iterdir():
        if old.name.split(".")[0] != key:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def load(*, path: str, sha256: str) -> ClassifierMixin:
    """Load an artifact we wrote, refusing it unless its sha256 matches the recorded one."""
    full = (artifact_root() / path).resolve()
    if artifact_root().resolve() not in full.parents:
        raise ArtifactError(f"artifact path {path!r} is outside the artifact root")
    try:
        data = full.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path!r}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(f"artifact {path!r} sha256 {actual} does not match {sha256}")
    return joblib.load(io.BytesIO(data))
