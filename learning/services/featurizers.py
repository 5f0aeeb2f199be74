"""Fit a project's featurizer on its samples and keep that fit until the samples change."""
from __future__ import annotations

import hashlib

import sklearn

from annotation.models import Project
from learning import artifacts, features
from learning.model_input import model_input_random_subset, project_samples_fingerprint

# Featurizers are fitted on a random subsample of about this many of a project's samples.
FEATURIZER_FIT_ROWS = 100000


def _fitted_featurizer(project: Project, pool_input) -> object | None:
    """Fit the kind's featurizer on ``pool_input``, samples of the project (labeled or not)."""
    if project.kind == Project.Kind.IMAGE:
        return None
    params = (project.model_spec or {}).get("featurizer", {})
    return features.build_featurizer(project.kind, **params).fit(pool_input)


def _project_featurizer(project: Project) -> object | None:
    """Return the featurizer fitted on the project's samples as they are now.

    It depends on the samples alone, not on labels, so retrains between two imports share
    one fit (a TF-IDF over 100k texts, or medians over 100k rows, take seconds).
    """
    if project.kind == Project.Kind.IMAGE:
        return None
    params = (project.model_spec or {}).get("featurizer", {})
    key = hashlib.sha256(repr((
        project.kind, sorted(params.items()), project.columns, sklearn.__version__,
        project_samples_fingerprint(project=project),
    )).encode()).hexdigest()[:24]
    featurizer = artifacts.featurizer_cached(project_id=project.pk, key=key)
    if featurizer is None:
        # Vocabularies, medians, scales and categories settle long before a million rows.
        _ids, pool_input = model_input_random_subset(project=project, max_rows=FEATURIZER_FIT_ROWS)
        featurizer = _fitted_featurizer(project, pool_input)
        featurizer.cache_key_ = key  # names the rows it makes in the pool's text cache
        artifacts.featurizer_store(featurizer, project_id=project.pk, key=key)
    return featurizer
