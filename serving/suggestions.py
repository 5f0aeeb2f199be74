"""The served model's guesses for a few samples: the labeling page's hint, the review filter.

Registered as annotation's ``suggestions`` hook, so the labeling pages never import serving.

Computed on demand for the rows on screen only, in a request of their own, so the queue
itself never waits for a model.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotation.models import Project, Sample
from core.errors import DomainError
from learning.model_input import sample_feature_matrix
from serving.model_cache import served_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suggestion:
    label: str
    confidence: float
    model_version: int


def _features(project: Project, samples: Sequence[Sample]):
    if project.kind == Project.Kind.IMAGE:
        return sample_feature_matrix(project=project, samples=samples)
    if project.kind == Project.Kind.TEXT:
        return [sample.text for sample in samples]
    return [sample.values or {} for sample in samples]


def suggestions_for(*, project: Project, samples: Sequence[Sample]) -> dict[int, Suggestion]:
    """Return sample id -> the served model's label and confidence; empty without a model.

    One ``predict_proba`` call for all ``samples``. Any failure to featurize or predict
    (no served model yet, a kind the model cannot read) yields no suggestions rather than
    an error: a hint is never worth a broken page.
    """
    if not samples:
        return {}
    try:
        model = served_model(project_id=project.pk)
        proba = model.estimator.predict_proba(_features(project, samples))
    except DomainError:
        return {}
    except Exception as exc:  # the hint is optional; note why and carry on without it
        logger.warning("no suggestions for project %s: %r", project.pk, exc)
        return {}
    classes = [str(c) for c in model.estimator.classes_]
    best = np.argmax(proba, axis=1)
    return {
        sample.pk: Suggestion(label=classes[i], confidence=float(row[i]), model_version=model.number)
        for sample, row, i in zip(samples, proba, best)
    }
