"""Compare two ready versions: their stored metrics side by side, and both models run on
today's labeled test split to list the held-out samples whose prediction changed.

A service, not a selector, because it reads the two artifacts from disk (sha-checked by
``learning.artifacts``); it writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from annotation.models import Project, Sample
from annotation.selectors import labeled_samples
from learning import artifacts
from learning.models import ModelVersion
from learning.model_input import sample_feature_matrix

CHANGED_SHOWN = 50  # changed samples listed on the page; all of them are counted
_PREDICT_CHUNK = 2000


@dataclass(frozen=True)
class Delta:
    name: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class ClassDelta:
    label: str
    precision: Delta
    recall: Delta
    f1: Delta
    support_a: int | None
    support_b: int | None

    @property
    def deltas(self) -> tuple[Delta, Delta, Delta]:
        return self.precision, self.recall, self.f1


@dataclass(frozen=True)
class ChangedSample:
    sample: Sample
    true_label: str
    predicted_a: str
    predicted_b: str


@dataclass
class Comparison:
    a: ModelVersion
    b: ModelVersion
    metrics: list[Delta]
    per_class: list[ClassDelta]
    test_count: int = 0  # labeled test samples today, both models predicted on them
    changed_count: int = 0
    fixed_count: int = 0  # B right where A was wrong
    broken_count: int = 0  # B wrong where A was right
    changed: list[ChangedSample] = field(default_factory=list)  # the first CHANGED_SHOWN
    error: str = ""  # why the test split could not be predicted (an artifact refused)


def _per_class(a: ModelVersion, b: ModelVersion) -> list[ClassDelta]:
    pa, pb = a.metrics.get("per_class") or {}, b.metrics.get("per_class") or {}
    labels = list(pa) + [label for label in pb if label not in pa]
    rows = []
    for label in labels:
        ra, rb = pa.get(label) or {}, pb.get(label) or {}
        rows.append(ClassDelta(
            label, *(Delta(name, ra.get(name), rb.get(name)) for name in ("precision", "recall", "f1")),
            ra.get("support"), rb.get("support")))
    return rows


def _predict(model, project: Project, samples: list[Sample]) -> np.ndarray:
    out = []
    for start in range(0, len(samples), _PREDICT_CHUNK):
        chunk = samples[start:start + _PREDICT_CHUNK]
        out.append(np.asarray(model.predict(sample_feature_matrix(project=project, samples=chunk))))
    return np.concatenate(out).astype(str) if out else np.array([], dtype=str)


def version_compare(*, project: Project, a: ModelVersion, b: ModelVersion) -> Comparison:
    """Compare version ``a`` with version ``b`` (deltas are b − a)."""
    comparison = Comparison(a=a, b=b, metrics=[
        Delta("accuracy", a.accuracy, b.accuracy), Delta("macro-F1", a.macro_f1, b.macro_f1),
        Delta("labels trained on", a.trained_on_label_count, b.trained_on_label_count),
        Delta("test labels", a.test_label_count, b.test_label_count),
        Delta("fit seconds", a.fit_seconds, b.fit_seconds),
    ], per_class=_per_class(a, b))
    rows = labeled_samples(project=project, split=Sample.Split.TEST)
    if not rows:
        return comparison
    try:
        model_a = artifacts.load(path=a.artifact_path, sha256=a.artifact_sha256)
        model_b = artifacts.load(path=b.artifact_path, sha256=b.artifact_sha256)
    except artifacts.ArtifactError as exc:
        comparison.error = f"cannot load a model: {exc}"
        return comparison
    samples = [sample for sample, _value, _id in rows]
    truth = np.array([value for _s, value, _id in rows], dtype=str)
    pred_a, pred_b = _predict(model_a, project, samples), _predict(model_b, project, samples)
    changed = np.flatnonzero(pred_a != pred_b)
    comparison.test_count = len(samples)
    comparison.changed_count = len(changed)
    comparison.fixed_count = int(np.sum((pred_b == truth) & (pred_a != truth)))
    comparison.broken_count = int(np.sum((pred_a == truth) & (pred_b != truth)))
    comparison.metrics.append(Delta("accuracy on today's test labels",
                                    float(np.mean(pred_a == truth)), float(np.mean(pred_b == truth))))
    comparison.changed = [ChangedSample(samples[i], truth[i], pred_a[i], pred_b[i])
                          for i in changed[:CHANGED_SHOWN]]
    return comparison
