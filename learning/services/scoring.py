"""Rescore the unlabeled pool under a version, chunk by chunk: in process or as a Celery group."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Project
from learning import artifacts, compiled_features, featurizer_options, sparse_cache
from learning.models import Alert, ModelVersion
from learning.pool_scores import pool_chunk_ranking_write
from learning.model_input import (
    feature_cache_update,
    pool_chunk_bounds,
    pool_model_input_between,
    pool_unlabeled_ids_between,
    pool_unlabeled_rows_between,
    tabular_columns,
)
from learning.services.alerts import _alert, _alerts_resolve
from learning.services.dispatch import _send_chunks, _start_next_queued
from learning.services.liveness import heartbeat
from learning.services.ranking import _rank_top, _scores
from learning.services.suspicion import label_suspicion_start

logger = logging.getLogger(__name__)

# Samples per pool-scoring task: large enough that a task's fixed cost (loading the
# artifact, one COPY) is small against its work, small enough to spread over workers.
SCORE_CHUNK = 50000
# With a pretrained featurizer each sample first costs an ONNX run (3-50 ms here): smaller
# chunks spread the embedding of a new pool over every worker (embedding_cache keeps them).
PRETRAINED_SCORE_CHUNK = 2000
# Scored samples stored per chunk, in order (at least this many batches of the project):
# what annotators label before the next retrain reorders the queue. The rest keep score 0.
QUEUE_TOP_PER_CHUNK = 1000
QUEUE_TOP_BATCHES = 20
# ...but never more than this: every stored score is a row rewrite, so 20 batches of a
# large batch size (all 50,000 rows of a chunk at batch size 2,500 and up) made the
# rescoring's writes grow with the batch size (issue 17). Past the top, samples keep
# score 0 and are handed out in random order, which in a batch that large is about what
# its tail's uncertainty order would give.
QUEUE_TOP_MAX_PER_CHUNK = 2000


def score_chunk_size(project: Project) -> int:
    """Samples per scoring chunk of ``project``: fewer when each needs an embedding."""
    name = featurizer_options.featurizer_name(project.model_spec, project.kind)
    return PRETRAINED_SCORE_CHUNK if featurizer_options.is_pretrained(name) else SCORE_CHUNK


def pool_score(*, project: Project, version: ModelVersion) -> int:
    """Score every unlabeled pool sample under ``version`` in this process; return the count.

    The synchronous path (tests, scripts); retrains split the same work into a Celery group.
    """
    feature_cache_update(project=project)
    estimator = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    scored = sum(_score_chunk(project, estimator, lo, hi, seed=version.number)
                 for lo, hi in pool_chunk_bounds(project=project, size=score_chunk_size(project)))
    _rank_top(project, estimator, seed=version.number)
    return scored


def _featurized_texts_between(project: Project, featurizer, lo: int, hi: int, transform=None):
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
    fresh = (transform or featurizer.transform)([texts[i] for i in missing])
    try:
        sparse_cache.put(directory, ids[missing], fresh)
    except OSError:  # an import refitted the featurizer and removed this one's rows meanwhile
        logger.warning("could not keep featurized texts of %s in %s", project, directory)
    if cached is None:
        return ids, fresh
    order = np.concatenate([np.flatnonzero(found), missing])
    return ids, sp.vstack([cached, fresh], format="csr")[np.argsort(order)]


def _featurized_rows_between(project: Project, lean, lo: int, hi: int):
    """Return (ids, featurized rows) of the unlabeled pool table rows with ``lo <= id <= hi``
    through the compiled featurizer: cached numbers as they are, else the stored rows."""
    ids, rows = pool_unlabeled_rows_between(project=project, lo=lo, hi=hi)
    if isinstance(rows, np.ndarray):
        return ids, lean.matrix(rows, tabular_columns(project), overwrite=rows.flags.owndata)
    return ids, lean.rows(rows)


# The last artifact this process scored with, and its pieces: a worker scoring chunk after
# chunk under one version loads and compiles it once (it was checked by sha256 when read;
# artifacts never change once written).
_last: dict[str, object] = {}


def _load_scorer(scorer: ModelVersion):
    key = (scorer.artifact_path, scorer.artifact_sha256)
    if _last.get("key") != key:
        _last.clear()
        _last.update(key=key, estimator=artifacts.load(path=key[0], sha256=key[1]))
    return _last["estimator"]


def _compiled_pieces(estimator) -> tuple[object, object, object]:
    """Return (featurizer, the rest, lean transform) of ``estimator``, compiled once."""
    if _last.get("compiled_for") is not estimator:
        featurizer, rest = compiled_features.split_featurizer(estimator)
        _last.update(compiled_for=estimator, pieces=(
            featurizer, rest, compiled_features.compile_featurizer(featurizer)))
    return _last["pieces"]


def _score_chunk(project: Project, estimator, lo: int, hi: int, *, seed: int) -> int:
    """Score the unlabeled pool samples with ``lo <= id <= hi``, store the chunk's top;
    return how many were scored."""
    featurizer, rest, lean = _compiled_pieces(estimator)
    if project.kind == Project.Kind.TEXT and hasattr(featurizer, "cache_key_"):
        ids, X = _featurized_texts_between(project, featurizer, lo, hi, lean)
        return _rank_chunk(project, rest, lo, hi, ids, X, seed=seed)
    if project.kind == Project.Kind.TABULAR and lean is not None:
        ids, X = _featurized_rows_between(project, lean, lo, hi)
        return _rank_chunk(project, rest, lo, hi, ids, X, seed=seed)
    ids, X = pool_model_input_between(project=project, lo=lo, hi=hi)
    return _rank_chunk(project, estimator, lo, hi, ids, X, seed=seed)


def _rank_chunk(project: Project, estimator, lo: int, hi: int, ids: np.ndarray, X, *,
                seed: int) -> int:
    if len(ids) == 0:
        return 0
    pool_chunk_ranking_write(
        project_id=project.pk, lo=lo, hi=hi, sample_ids=ids,
        scores=_scores(project, estimator, X, seed=seed),
        keep=min(max(QUEUE_TOP_PER_CHUNK, QUEUE_TOP_BATCHES * project.batch_size),
                 QUEUE_TOP_MAX_PER_CHUNK),
    )
    return len(ids)


def pool_score_start(*, version: ModelVersion, scorer: ModelVersion) -> int:
    """Rescore the pool under ``scorer`` as a Celery group of chunks; return the chunk count.

    Progress is counted on ``version`` (the retrain that asked for it): each chunk leaves
    ``score_chunks_left`` when written, and the last one sets ``scored_sample_count`` and
    ``score_seconds`` and starts any queued retrain. Chunks lost with their worker, or that
    never reached the broker, are sent again by the sweeper (``healing.py``).
    """
    project = version.project
    feature_cache_update(project=project)
    bounds = pool_chunk_bounds(project=project, size=score_chunk_size(project))
    now = timezone.now()
    ModelVersion.objects.filter(pk=version.pk).update(
        score_chunks_total=len(bounds), score_chunks_done=0, score_rows_done=0,
        scoring_started_at=now, heartbeat_at=now, scored_by=scorer,
        score_chunks_left=[[lo, hi, 0] for lo, hi in bounds],
    )
    if not bounds:
        _pool_score_finish(version.pk, scorer.pk)
        return 0
    _send_chunks(version.pk, scorer.pk, [[lo, hi] for lo, hi in bounds])
    return len(bounds)


def _chunk_find(version: ModelVersion, lo: int, hi: int) -> list[int] | None:
    return next((chunk for chunk in version.score_chunks_left or []
                 if chunk[0] == lo and chunk[1] == hi), None)


def _chunk_begin(version_id: int, lo: int, hi: int) -> tuple[bool, bool]:
    """Count a worker starting a chunk; return (score it, the rescoring is complete).

    A chunk already written (a duplicate message), or of a rescoring that ended, is not
    scored again: an old message must not overwrite a newer model's scores. A chunk that
    ``RETRAIN_MAX_ATTEMPTS`` workers started without finishing (it keeps killing them) is
    given up, its samples keeping their older scores.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None or version.scored_sample_count is not None:
            return False, False
        chunk = _chunk_find(version, lo, hi)
        if chunk is None:
            return False, False
        if chunk[2] >= settings.RETRAIN_MAX_ATTEMPTS:
            version.score_chunks_left.remove(chunk)
            version.score_chunks_done += 1
            version.error = (f"pool rescoring: chunk of sample ids {lo}-{hi} lost its worker "
                             f"{chunk[2]} times; its samples keep older scores")
            version.save(update_fields=["score_chunks_left", "score_chunks_done", "error"])
            _alert(project_id=version.project_id, version=version, kind=Alert.Kind.GAVE_UP,
                   message=f"v{version.number}: {version.error}")
            return False, not version.score_chunks_left
        chunk[2] += 1
        version.heartbeat_at = timezone.now()
        version.save(update_fields=["score_chunks_left", "heartbeat_at"])
        return True, False


def _chunk_done(version_id: int, lo: int, hi: int, written: int) -> bool:
    """Count a written chunk once; return whether it was the rescoring's last."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        chunk = _chunk_find(version, lo, hi)
        if chunk is None or version.scored_sample_count is not None:
            return False  # another worker wrote it first (a message sent again)
        version.score_chunks_left.remove(chunk)
        version.score_chunks_done += 1
        version.score_rows_done += written
        version.heartbeat_at = timezone.now()
        version.save(update_fields=["score_chunks_left", "score_chunks_done", "score_rows_done",
                                    "heartbeat_at"])
        return not version.score_chunks_left


def pool_score_chunk(*, version_id: int, scorer_id: int, lo: int, hi: int) -> None:
    """Score one chunk of the pool and count it; a failure is noted, never raised."""
    score, complete = _chunk_begin(version_id, lo, hi)
    if not score:
        if complete:
            _pool_score_finish(version_id, scorer_id)
        return
    scorer = ModelVersion.objects.select_related("project").get(pk=scorer_id)
    project = scorer.project
    written = 0
    with heartbeat(version_id):
        try:
            # This machine's feature cache, as the training worker's: a worker with a disk
            # of its own (files in S3) otherwise read every chunk's rows from the database
            # payloads, retrain after retrain (41 s a chunk at 1M instead of 1.5 s). Once
            # filled, this costs an index lookup.
            feature_cache_update(project=project)
            estimator = _load_scorer(scorer)
            written = _score_chunk(project, estimator, lo, hi, seed=scorer.number)
        except Exception as exc:  # the queue keeps this chunk's old scores; say why on the version
            logger.exception("scoring chunk %s-%s of %s failed", lo, hi, project)
            ModelVersion.objects.filter(pk=version_id).update(
                error=f"pool rescoring failed: {type(exc).__name__}: {exc}"
            )
    if _chunk_done(version_id, lo, hi, written):
        _pool_score_finish(version_id, scorer_id)


def _pool_score_finish(version_id: int, scorer_id: int | None) -> None:
    version = ModelVersion.objects.select_related("project").get(pk=version_id)
    if scorer_id is not None:
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
    # Only the first to finish counts (the sweeper may finish a rescoring whose last step
    # was lost while a late chunk does the same).
    finished = ModelVersion.objects.filter(pk=version_id, scored_sample_count__isnull=True).update(
        scored_sample_count=F("score_rows_done"), score_seconds=elapsed
    )
    if finished:
        _alerts_resolve(project_id=version.project_id, number=version.number)
        # The cycle rests: judge the labels now (a task of its own, after this commit),
        # so the search delays neither serving nor the queue's new order.
        label_suspicion_start(version=version)
        _start_next_queued(version.project_id)
