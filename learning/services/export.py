"""Export a ready model version: an MLflow model (zip) or an ONNX file.

The artifact is loaded only through ``learning.artifacts`` (sha256-checked); the formats
themselves are written by ``learning.export_mlflow`` and ``learning.export_onnx``.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from annotation.models import Project
from core.errors import DomainError
from learning import artifacts
from learning.export_mlflow import mlflow_zip
from learning.export_onnx import NotExportable, onnx_bytes
from learning.pretrained.transformers import TRANSFORMERS
from learning.exported_model import ExportedModel
from learning.features import TabularFeaturizer
from learning.models import ModelVersion
from learning.version_errors import ArtifactRefused, UnknownVersion, VersionNotReady

FORMATS = ("mlflow", "onnx")

__all__ = ["FORMATS", "ModelExport", "NotExportable", "model_version_export"]


@dataclass(frozen=True)
class ModelExport:
    content: bytes
    filename: str
    content_type: str


def _ready_version(project: Project, number: int) -> ModelVersion:
    version = ModelVersion.objects.filter(project=project, number=number).first() if (
        0 < number < 2**31) else None
    if version is None:
        raise UnknownVersion(f"this project has no model version {number}",
                                   detail={"version": number})
    if version.status != ModelVersion.Status.READY or not version.artifact_path:
        raise VersionNotReady(f"model version {number} is {version.status}, not ready",
                                    detail={"version": number, "status": version.status})
    return version


def _metadata(project: Project, version: ModelVersion) -> dict:
    return {"project": project.slug, "kind": project.kind, "model_version": version.number,
            "accuracy": version.accuracy, "macro_f1": version.macro_f1,
            "trained_on_label_count": version.trained_on_label_count,
            "artifact_sha256": version.artifact_sha256,
            "sklearn_version": version.sklearn_version,
            "exported_at": timezone.now().isoformat()}


def model_version_export(*, project: Project, number: int, fmt: str) -> ModelExport:
    """Return version ``number`` of ``project`` in format ``fmt`` (``mlflow`` or ``onnx``).

    404 ``unknown_version``, 409 ``version_not_ready`` (not trained), ``artifact_refused``
    (its file fails its sha256 check) or ``not_exportable`` (the configuration has no
    conversion to ``fmt``; ``detail.reason`` says which part).
    """
    if fmt not in FORMATS:
        raise DomainError(f"unknown format {fmt!r}; choose from {list(FORMATS)}",
                          detail={"format": [f"choose from {list(FORMATS)}"]})
    version = _ready_version(project, number)
    try:
        pipeline = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    except artifacts.ArtifactError as exc:
        raise ArtifactRefused(
            f"model version {number}'s artifact failed its integrity check") from exc
    featurizer = dict(getattr(pipeline, "steps", [])).get("features")
    if isinstance(featurizer, tuple(TRANSFORMERS.values())):
        # The CNN or MiniLM run from this machine's FEATURIZER_DIR; neither a pickled
        # predictor nor skl2onnx could carry the ONNX file and its checks along.
        raise NotExportable(
            f"cannot export to {fmt}: the {featurizer.name} featurizer runs a pretrained ONNX "
            "model installed on this machine, which the export does not carry",
            detail={"reason": "pretrained_featurizer"})
    metadata = _metadata(project, version)
    stem = f"{project.slug}-v{version.number}"
    if fmt == "onnx":
        content = onnx_bytes(pipeline, kind=project.kind, classes=pipeline.classes_,
                             image_size=project.image_size, metadata=metadata)
        return ModelExport(content, f"{stem}.onnx", "application/octet-stream")
    model = ExportedModel(pipeline=pipeline, kind=project.kind, labels=project.labels,
                          columns=project.columns, image_size=project.image_size,
                          max_image_pixels=settings.MAX_IMAGE_PIXELS, metadata=metadata)
    numeric = featurizer.numeric_columns_ if isinstance(featurizer, TabularFeaturizer) else ()
    content = mlflow_zip(model, name=f"{stem}-mlflow", numeric_columns=numeric)
    return ModelExport(content, f"{stem}-mlflow.zip", "application/zip")
