"""Rescore the unlabeled pool under a version, chunk by chunk: in process or as a Celery group."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from sklearn.pipeline import Pipeline

from annotation.models import Project
from core.jobs import task_group_start
from learning import artifacts, sparse_cache
from learning.models import ModelVersion
from learning.pool_scores import pool_chunk_ranking_write
from learning.model_input import (
    feature_cache_update,
    pool_chunk_bounds,
    pool_excluded_ids_between,
    pool_model_input_between,
    pool_unlabeled_ids_between,
    take_rows,
)
from learning.services.ranking import _rank_top, _scores
from learning.services.requests import _start_next_queued

logger = logging.getLogger(__name__)

# Samples per pool-scoring task: large enough that a task's fixed cost (loading the
# artifact, one COPY) is small against its work, small enough to spread over workers.
SCORE_CHUNK = 50000
# Scored samples stored per chunk, in order (at least this many batches of the project):
# what annotators label before the next retrain reorders the queue. The rest keep score 0.
QUEUE_TOP_PER_CHUNK = 1000
QUEUE_TOP_BATCHES = 20


def pool_score(*, project: Project, version: ModelVersion) -> int:
    """Score every unlabeled pool sample under ``version`` in this process; return the count.

    The synchronous path (tests, scripts); retrains split the same work into a Celery group.
    """
    feature_cache_update(project=project)
    estimator = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    scored = sum(_score_chunk(project, estimator, lo, hi, seed=version.number)
                 for lo, hi in pool_chunk_bounds(project=project, size=SCORE_CHUNK))
    _rank_top(project, estimator, seed=version.number)
    return scored


def _featurized_texts_between(project: Project, featurizer, lo: int, hi: int):
    """Return (ids, featurized rows) of the unlabeled pool texts with ``lo <= id <= hi``,
    transforming only texts this featurizer has not seen (and keeping their rows)."""
    directory = artifacts.featurizer_rows_dir(project_id=project.pk, key=featurizer.cache_key_)
    ids = pool_unlabeled_ids_between(project=project, lo=lo, hi=hi)
    found, cached = sparse_cache.get(directory, ids)
    if found.all():
        return ids, cached
    ids, texts = pool_model_input_between(project=project, lo=lo, hi=hi)
    found, cached = sparse_cache.get(directory, ids)
    missing = np.flatnonzero(~found)
    fresh = featurizer.transform([texts[i] for i in missing])
    try:
        sparse_cache.put(directory, ids[missing], fresh)
    except OSError:  # an import refitted the featurizer and removed this one's rows meanwhile
        logger.warning("could not keep featurized texts of %s in %s", project, directory)
    if cached is None:
        return ids, fresh
    order = np.concatenate([np.flatnonzero(found), missing])
    return ids, sp.vstack([cached, fresh], format="csr")[np.argsort(order)]


def _score_chunk(project: Project, estimator, lo: int, hi: int, *, seed: int) -> int:
    """Score the unlabeled pool samples with ``lo <= id <= hi``, store the chunk's top;
    return how many were scored."""
    featurizer = estimator[0] if isinstance(estimator, Pipeline) else None
    if project.kind == Project.Kind.TEXT and hasattr(featurizer, "cache_key_"):
        ids, X = _featurized_texts_between(project, featurizer, lo, hi)
        return _rank_chunk(project, estimator[1:], lo, hi, ids, X, seed=seed)
    ids, X = pool_model_input_between(project=project, lo=lo, hi=hi)
    excluded = pool_excluded_ids_between(project=project, lo=lo, hi=hi)
    if len(excluded):  # the cache holds labeled and test samples too
        rows = np.flatnonzero(~np.isin(ids, excluded, assume_unique=True))
        ids, X = ids[rows], take_rows(X, rows)
    return _rank_chunk(project, estimator, lo, hi, ids, X, seed=seed)


def _rank_chunk(project: Project, estimator, lo: int, hi: int, ids: np.ndarray, X, *,
                seed: int) -> int:
    if len(ids) == 0:
        return 0
    pool_chunk_ranking_write(
        project_id=project.pk, lo=lo, hi=hi, sample_ids=ids,
        scores=_scores(project, estimator, X, seed=seed),
        keep=max(QUEUE_TOP_PER_CHUNK, QUEUE_TOP_BATCHES * project.batch_size),
    )
    return len(ids)


def pool_score_start(*, version: ModelVersion, scorer: ModelVersion) -> int:
    """Rescore the pool under ``scorer`` as a Celery group of chunks; return the chunk count.

    Progress is counted on ``version`` (the retrain that asked for it): the last chunk to
    finish sets ``scored_sample_count`` and ``score_seconds`` and starts any queued retrain.
    """
    project = version.project
    feature_cache_update(project=project)
    bounds = pool_chunk_bounds(project=project, size=SCORE_CHUNK)
    ModelVersion.objects.filter(pk=version.pk).update(
        score_chunks_total=len(bounds), score_chunks_done=0, score_rows_done=0,
        scoring_started_at=timezone.now(),
    )
    if not bounds:
        _pool_score_finish(version.pk, scorer.pk)
        return 0
    task_group_start("learning.tasks.pool_score_chunk_task",
                     ((version.pk, scorer.pk, lo, hi) for lo, hi in bounds))
    return len(bounds)


def pool_score_chunk(*, version_id: int, scorer_id: int, lo: int, hi: int) -> None:
    """Score one chunk of the pool and count it; a failure is noted, never raised."""
    scorer = ModelVersion.objects.select_related("project").get(pk=scorer_id)
    project = scorer.project
    written = 0
    try:
        estimator = artifacts.load(path=scorer.artifact_path, sha256=scorer.artifact_sha256)
        written = _score_chunk(project, estimator, lo, hi, seed=scorer.number)
    except Exception as exc:  # the queue keeps this chunk's old scores; say why on the version
        logger.exception("scoring chunk %s-%s of %s failed", lo, hi, project)
        ModelVersion.objects.filter(pk=version_id).update(
            error=f"pool rescoring failed: {type(exc).__name__}: {exc}"
        )
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        version.score_chunks_done += 1
        version.score_rows_done += written
        version.save(update_fields=["score_chunks_done", "score_rows_done"])
        last = version.score_chunks_done == version.score_chunks_total
    if last:
        _pool_score_finish(version_id, scorer_id)


def _pool_score_finish(version_id: int, scorer_id: int) -> None:
    version = ModelVersion.objects.select_related("project").get(pk=version_id)
    scorer = ModelVersion.objects.get(pk=scorer_id)
    try:
        estimator = artifacts.load(path=scorer.artifact_path, sha256=scorer.artifact_sha256)
        _rank_top(version.project, estimator, seed=scorer.number)
    except Exception as exc:  # plain uncertainty order stays; say why
        logger.exception("ranking the top of %s failed", version.project)
        ModelVersion.objects.filter(pk=version_id).update(
            error=f"batch ranking failed: {type(exc).__name__}: {exc}"
        )
    elapsed = (timezone.now() - version.scoring_started_at).total_seconds()
    ModelVersion.objects.filter(pk=version_id).update(
        scored_sample_count=F("score_rows_done"), score_seconds=elapsed
    )
    _start_next_queued(version.project_id)
