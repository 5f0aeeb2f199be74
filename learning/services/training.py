"""Fit a version's model on the pool's labels, measure it on the test split, save it."""
from __future__ import annotations

import time

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.pipeline import Pipeline

from annotation.models import Project, Sample
from annotation.selectors import labeled_samples
from core.errors import DomainError
from learning import artifacts
from learning.estimators import build_estimator
from learning.label_snapshots import snapshot_sha256
from learning.models import ModelVersion
from learning.model_input import model_input_of_ids
from learning.services.drift_reference import drift_reference_build_quietly
from learning.services.featurizers import _project_featurizer


class TrainingError(DomainError):
    """Training cannot proceed with the data at hand (one class, no labels, ...), or a
    version cannot be served in the state it is in."""

    code = "training_error"
    status = 409


def _metrics(y_true: list[str], y_pred: np.ndarray, labels: list[str]) -> dict:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = sorted(set(y_true))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "labels": labels,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _model(project: Project, estimator, featurizer) -> object:
    """Return what the artifact holds: the estimator, behind the fitted featurizer if any.

    Text and tabular artifacts take raw payloads (texts; column -> value tables). Image
    artifacts take pixel rows in [0, 1], as they always did.
    """
    if featurizer is None:
        return estimator
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("clf", estimator)]
    return Pipeline([("features", featurizer), *steps])


def _labeled_input(project: Project, rows: list[tuple[Sample, str, int]]):
    ids = np.fromiter((sample.pk for sample, _v, _id in rows), dtype=np.int64, count=len(rows))
    return model_input_of_ids(project=project, ids=ids)


def _fit(version: ModelVersion) -> list[int]:
    """Fit and measure ``version``; return the ids of the labels it was trained and tested
    on, sorted (the caller records them with the version)."""
    project = version.project
    train_rows = labeled_samples(project=project, split=Sample.Split.POOL, payloads=False)
    test_rows = labeled_samples(project=project, split=Sample.Split.TEST, payloads=False)
    if not train_rows:
        raise TrainingError("no labeled pool samples to train on")
    y_train = [value for _s, value, _id in train_rows]
    if len(set(y_train)) < 2:
        raise TrainingError(f"labels of only one class ({y_train[0]!r}); need at least two")
    label_ids = sorted(label_id for _s, _v, label_id in train_rows + test_rows)

    started = time.perf_counter()
    featurizer = _project_featurizer(project)
    X_train = _labeled_input(project, train_rows)
    if project.kind == Project.Kind.TEXT and not any(str(text or "").strip() for text in X_train):
        raise TrainingError("every labeled text is empty; nothing to learn from")
    if featurizer is not None:
        X_train = featurizer.transform(X_train)
    estimator = build_estimator(project.model_spec, kind=project.kind).fit(X_train, y_train)
    model = _model(project, estimator, featurizer)
    version.fit_seconds = time.perf_counter() - started
    version.trained_on_label_count = len(train_rows)
    version.test_label_count = len(test_rows)
    version.last_label_id = label_ids[-1]
    version.label_snapshot_sha256 = snapshot_sha256(label_ids)
    if test_rows:
        y_test = [value for _s, value, _id in test_rows]
        version.metrics = _metrics(y_test, model.predict(_labeled_input(project, test_rows)), project.labels)
        version.accuracy = version.metrics["accuracy"]
        version.macro_f1 = version.metrics["macro_f1"]
    version.artifact_path, version.artifact_sha256 = artifacts.save(
        model, project_id=project.pk, number=version.number
    )
    version.sklearn_version = sklearn.__version__
    drift_reference_build_quietly(version=version, model=model, featurizer=featurizer,
                                  trained_ids={sample.pk for sample, _v, _id in train_rows})
    return label_ids
