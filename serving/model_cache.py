"""The served model of each project, loaded once per process and swapped on promotion."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sklearn.base import ClassifierMixin

from annotation.errors import DomainError
from learning import artifacts
from learning.models import ModelVersion

logger = logging.getLogger(__name__)


class NoServedModel(DomainError):
    code = "no_model"
    status = 409


@dataclass(frozen=True)
class LoadedModel:
    version_id: int
    number: int
    estimator: ClassifierMixin


_lock = threading.Lock()
_served: dict[int, LoadedModel] = {}


def served_model(*, project_id: int) -> LoadedModel:
    """Return the project's served model, loading it only when the served version changed.

    The check is one indexed query per call. If the newly served artifact fails its hash
    check, the previously loaded model keeps serving and the error is logged.
    """
    row = (
        ModelVersion.objects.filter(project_id=project_id, is_served=True)
        .values("id", "number", "artifact_path", "artifact_sha256")
        .first()
    )
    current = _served.get(project_id)
    if row is None:
        if current is not None:
            return current
        raise NoServedModel("this project has no served model yet; label a batch first")
    if current is not None and current.version_id == row["id"]:
        return current
    with _lock:
        current = _served.get(project_id)
        if current is not None and current.version_id == row["id"]:
            return current
        try:
            estimator = artifacts.load(path=row["artifact_path"], sha256=row["artifact_sha256"])
        except artifacts.ArtifactError:
            logger.exception("refusing artifact of model version %s", row["id"])
            if current is not None:
                return current
            raise NoServedModel("the served model's artifact failed its integrity check")
        loaded = LoadedModel(version_id=row["id"], number=row["number"], estimator=estimator)
        _served[project_id] = loaded
        return loaded


def clear() -> None:
    """Forget every loaded model (tests)."""
    with _lock:
        _served.clear()
