"""Fit a project's featurizer on its samples and keep that fit until the samples change."""
from __future__ import annotations

import hashlib

import sklearn

from annotation.models import Project
from learning import artifacts, featurizer_options
from learning.model_input import model_input_random_subset, project_samples_fingerprint
from learning.pretrained import files

# Featurizers are fitted on a random subsample of about this many of a project's samples.
FEATURIZER_FIT_ROWS = 100000
# Pretrained ones only fit a scaler (and PCA) on their embeddings, which settle on far
# fewer; every embedding costs an ONNX run (the rescoring chunks embed the rest).
PRETRAINED_FIT_ROWS = 5000


def _params(project: Project) -> dict:
    return dict((project.model_spec or {}).get("featurizer") or {})


def _has_featurizer(project: Project) -> bool:
    """Image artifacts take pixel rows as they are, unless the project chose CNN features."""
    name = featurizer_options.featurizer_name(project.model_spec, project.kind)
    return project.kind != Project.Kind.IMAGE or featurizer_options.is_pretrained(name)


def _fitted_featurizer(project: Project, pool_input) -> object | None:
    """Fit the project's featurizer on ``pool_input``, samples of the project (labeled or not)."""
    if not _has_featurizer(project):
        return None
    return featurizer_options.build(project.kind, _params(project)).fit(pool_input)


def _project_featurizer(project: Project) -> object | None:
    """Return the featurizer fitted on the project's samples as they are now.

    It depends on the samples alone, not on labels, so retrains between two imports share
    one fit (a TF-IDF over 100k texts, or medians over 100k rows, take seconds).
    """
    if not _has_featurizer(project):
        return None
    params = _params(project)
    name = featurizer_options.featurizer_name(project.model_spec, project.kind)
    pretrained = featurizer_options.is_pretrained(name)
    key = hashlib.sha256(repr((
        project.kind, sorted(params.items()), project.columns, sklearn.__version__,
        project_samples_fingerprint(project=project),
        files.files_sha(name) if pretrained else "",
    )).encode()).hexdigest()[:24]
    featurizer = artifacts.featurizer_cached(project_id=project.pk, key=key)
    if featurizer is None:
        # Vocabularies, medians, scales and categories settle long before a million rows.
        _ids, pool_input = model_input_random_subset(
            project=project, max_rows=PRETRAINED_FIT_ROWS if pretrained else FEATURIZER_FIT_ROWS)
        featurizer = _fitted_featurizer(project, pool_input)
        featurizer.cache_key_ = key  # names the rows it makes in the pool's text cache
        artifacts.featurizer_store(featurizer, project_id=project.pk, key=key)
    return featurizer
