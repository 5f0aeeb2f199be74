"""Reads of one model version for its page: metrics as tables, the confusion matrix as a heat
map, what "roll back" goes to, and the exact labels it was trained on (for the download)."""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from annotation.models import Label, Project, Sample
from learning import label_snapshots
from learning.models import ModelVersion, TrainingSnapshot

HEAT_BUCKETS = 5  # CSS classes heat-0 (empty) .. heat-5 (the whole row)
TRAINING_SET_FIELDS = ("sample_id", "external_id", "split", "label", "annotator", "label_id",
                       "labeled_at")
TRAINING_SET_SPLITS = {"pool": (Sample.Split.POOL,), "test": (Sample.Split.TEST,),
                       "all": (Sample.Split.POOL, Sample.Split.TEST)}
_IDS_PER_QUERY = 900  # under SQLite's bound on query parameters


def version_get(*, project: Project, number: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, number=number).first()


def versions_ready(*, project: Project) -> list[ModelVersion]:
    """Ready versions, newest first, without their metrics: the compare selector's options."""
    return list(ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY)
                .order_by("-number").only("id", "number", "macro_f1", "is_served"))


def rollback_target(*, project: Project) -> ModelVersion | None:
    """What "Roll back" serves: the newest ready version older than the served one that
    was itself served before. None when nothing is served or no such version exists."""
    served = ModelVersion.objects.filter(project=project, is_served=True).only("number").first()
    if served is None:
        return None
    return (ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY,
                                        served_at__isnull=False, number__lt=served.number)
            .order_by("-number").first())


@dataclass(frozen=True)
class ClassRow:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


def per_class_rows(metrics: dict) -> list[ClassRow]:
    per_class = metrics.get("per_class") or {}
    return [ClassRow(label, row["precision"], row["recall"], row["f1"], row["support"])
            for label, row in per_class.items()]


@dataclass(frozen=True)
class HeatCell:
    predicted: str
    count: int
    share: float  # of the row (the true class)
    bucket: int  # 0 (none) .. HEAT_BUCKETS
    diagonal: bool


@dataclass(frozen=True)
class HeatRow:
    label: str
    total: int
    cells: list[HeatCell]


def confusion_heatmap(metrics: dict) -> list[HeatRow]:
    """The confusion matrix with each cell's share of its row (recall on the diagonal) and a
    bucket for its colour; rows are true labels, columns predictions."""
    labels = metrics.get("labels") or []
    matrix = metrics.get("confusion_matrix") or []
    rows = []
    for label, counts in zip(labels, matrix):
        total = sum(counts)
        cells = []
        for j, (predicted, count) in enumerate(zip(labels, counts)):
            share = count / total if total else 0.0
            bucket = math.ceil(share * HEAT_BUCKETS) if count else 0
            cells.append(HeatCell(predicted, count, share, bucket, predicted == label))
        rows.append(HeatRow(label, total, cells))
    return rows


class TrainingSetUnavailable(Exception):
    """The exact labels of a version cannot be given (not trained, or not recorded and
    changed since, or no longer matching their sha256)."""


def training_set_label_ids(*, version: ModelVersion) -> np.ndarray:
    """The sorted ids of the labels ``version`` was trained and tested on, checked against
    its ``label_snapshot_sha256`` and against the label table (labels are never deleted)."""
    if version.status != ModelVersion.Status.READY or not version.label_snapshot_sha256:
        raise TrainingSetUnavailable(f"v{version.number} is {version.status}: it has no "
                                     "training set")
    snapshot = TrainingSnapshot.objects.filter(version=version).first()
    try:
        if snapshot is not None:
            ids = label_snapshots.decode(snapshot.label_ids,
                                         sha256=version.label_snapshot_sha256)
        else:
            ids = _label_ids_unchanged_since(version)
    except label_snapshots.SnapshotMismatch as exc:
        raise TrainingSetUnavailable(f"v{version.number}'s training set cannot be given "
                                     f"exactly: {exc}") from exc
    found = sum(Label.objects.filter(pk__in=chunk).count() for chunk in _chunks(ids))
    if found != len(ids):
        raise TrainingSetUnavailable(f"{len(ids) - found} of the {len(ids)} labels "
                                     f"v{version.number} was trained on no longer exist")
    return ids


def _label_ids_unchanged_since(version: ModelVersion) -> np.ndarray:
    """For a version trained before its label ids were recorded: the labels that would
    have been read then, valid only if they still hash to its sha256 (no label of theirs
    was corrected or undone since)."""
    rows = (Label.objects.current()
            .filter(sample__project_id=version.project_id, pk__lte=version.last_label_id or 0)
            .order_by("sample_id", "-created_at", "-id").values_list("sample_id", "id"))
    seen: set[int] = set()
    ids = []
    for sample_id, label_id in rows.iterator(chunk_size=5000):
        if sample_id not in seen:
            seen.add(sample_id)
            ids.append(label_id)
    sha256 = label_snapshots.snapshot_sha256(ids)
    if sha256 != version.label_snapshot_sha256:
        raise label_snapshots.SnapshotMismatch(
            "its label ids were not recorded (trained before they were), and the labels "
            "current up to its last label have changed since")
    return np.sort(np.asarray(ids, dtype=np.int64))


def _chunks(ids: np.ndarray) -> Iterator[list[int]]:
    for start in range(0, len(ids), _IDS_PER_QUERY):
        yield ids[start:start + _IDS_PER_QUERY].tolist()


def training_set_rows(*, ids: np.ndarray, split: str) -> Iterator[dict]:
    """Yield the labels ``ids`` of ``split`` (pool, test or all) in id order, a chunk at a
    time, as rows of ``TRAINING_SET_FIELDS``."""
    splits = TRAINING_SET_SPLITS[split]
    for chunk in _chunks(ids):
        labels = (Label.objects.filter(pk__in=chunk, sample__split__in=splits)
                  .select_related("sample", "annotator").order_by("pk")
                  .only("id", "value", "created_at", "sample__id", "sample__external_id",
                        "sample__split", "annotator__username"))
        for label in labels:
            yield {"sample_id": label.sample.pk, "external_id": label.sample.external_id,
                   "split": label.sample.split, "label": label.value,
                   "annotator": label.annotator.username, "label_id": label.pk,
                   "labeled_at": label.created_at}
