"""Order the head of the queue: uncertainty, a batch-diverse top, the cold start's picks."""
from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline

from annotation.models import Project, Sample
from learning import adaptive, strategies
from learning.models import ModelVersion
from learning.pool_scores import pool_scores_write
from learning.model_input import model_input_of_ids, model_input_random_subset
from learning.services.featurizers import _project_featurizer
from learning.services.strategy_mix import strategy_mix_update, strategy_picks_record

# Batch-diverse strategies rank this many samples (times the batch size) at the top.
RANKED_BATCHES = 1
# The cold start clusters a random subsample of about this many unlabeled pool samples.
COLD_START_ROWS = 20000


def _scores(project: Project, estimator, X, *, seed: int) -> np.ndarray:
    return strategies.uncertainty_scores(estimator, X, strategy=project.query_strategy, seed=seed)


def _rank_scores(picked_ids: list[int]) -> list[float]:
    """Scores above every uncertainty (which lies in [0, 1]) that keep the picked order."""
    n = len(picked_ids)
    return [2.0 - rank / n for rank in range(n)]


def _rank_top(project: Project, estimator, *, seed: int) -> None:
    """Reorder the top of the queue into a diverse batch for batch-diverse strategies.

    The queue reads samples by score, so the picks of ``select_batch`` (over the most
    uncertain candidates plus a random draw, for the exploration share) get scores above
    every plain uncertainty, in pick order; the rest keep their uncertainty below them.
    """
    if project.query_strategy not in ("default", "diverse_margin"):
        return
    # Only the diverse head is reranked (its cost is bounded, whatever the batch size); the
    # samples after it keep their uncertainty scores, which already order them.
    n = min(project.batch_size * RANKED_BATCHES, strategies.DIVERSE_MAX_PICKS)
    pool = Sample.objects.filter(project=project).in_pool().unlabeled()
    top = list(pool.order_by("-score", "random_key")
               .values_list("pk", flat=True)[: n * strategies.DEFAULT_CANDIDATES_PER_PICK])
    if len(top) <= 1:
        return
    extra = list(pool.exclude(pk__in=top).order_by("random_key").values_list("pk", flat=True)[:n])
    candidate_ids = np.asarray(sorted(top + extra), dtype=np.int64)
    clf, X = _split_featurizer(estimator, _model_input_of_ids(project, candidate_ids))
    if project.query_strategy == "default":
        picked_ids = _rank_mix(project, estimator, clf, X, candidate_ids, extra,
                               n=min(n, len(candidate_ids)), seed=seed)
    else:
        picked = strategies.select_batch(clf, X, n=min(n, len(candidate_ids)),
                                         strategy=project.query_strategy, seed=seed)
        picked_ids = candidate_ids[picked].tolist()
    # Picks of an earlier ranking that are not picked again fall back to plain uncertainty.
    stale = sorted(pool.filter(score__gt=1.0).exclude(pk__in=picked_ids)
                   .values_list("pk", flat=True))
    if stale:
        stale_ids = np.asarray(stale, dtype=np.int64)
        pool_scores_write(sample_ids=stale_ids, scores=_scores(
            project, estimator, _model_input_of_ids(project, stale_ids), seed=seed))
    pool_scores_write(sample_ids=np.asarray(picked_ids, dtype=np.int64),
                      scores=np.asarray(_rank_scores(picked_ids)))


def _rank_mix(project: Project, estimator, clf, X, candidate_ids: np.ndarray, extra: list[int],
              *, n: int, seed: int) -> list[int]:
    """The adaptive default's head: the project's measured mix of margin and random picks.

    The mix is measured first on the labels in so far (``strategy_mix``), then the head is
    split by its shares: margin picks from the candidates, random picks from the random
    draw ``extra``; the arm of each pick is recorded for the measurement after its label.
    """
    featurizer = estimator[0] if clf is not estimator else None
    mix = strategy_mix_update(project=project, classifier=clf, featurizer=featurizer)
    random_rows = np.flatnonzero(np.isin(candidate_ids, extra))
    picked, arms = adaptive.select_mix(clf, X, n=n, mix=mix, seed=seed, random_rows=random_rows)
    picked_ids = candidate_ids[picked].tolist()
    strategy_picks_record(project=project, sample_ids=picked_ids, arms=arms, ranked_by=seed)
    return picked_ids


def _split_featurizer(model, X) -> tuple[object, object]:
    """Return (classifier, featurized X): diversity is measured in the model's feature space."""
    if isinstance(model, Pipeline) and model.steps[0][0] == "features":
        return model[1:], model[0].transform(X)
    return model, X


def _model_input_of_ids(project: Project, ids: np.ndarray):
    return model_input_of_ids(project=project, ids=ids)


def pool_cold_start(*, project: Project) -> int:
    """Before the first model, put a k-means-diverse batch at the head of the queue.

    Picks ``batch_size`` unlabeled pool samples nearest k-means centres of the pool
    (featurized as training would; a random ``COLD_START_ROWS`` of it in large pools) and gives them scores above 0 in pick order; the rest
    keep 0 and are asked in random order. Returns how many were picked; 0 when the project
    already has a model or too few samples.
    """
    if ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY).exists():
        return 0
    n = project.batch_size
    pool_ids, X_pool = model_input_random_subset(project=project, max_rows=COLD_START_ROWS,
                                                 pool_only=True)
    if len(pool_ids) <= 1:
        return 0
    featurizer = _project_featurizer(project)  # kept: the first retrain fits no other
    if featurizer is not None:
        X_pool = featurizer.transform(X_pool)
    picked = strategies.select_cold_start(X_pool, n=min(n, len(pool_ids)), seed=project.pk)
    picked_ids = pool_ids[picked]
    # Scores in (0, 1] in pick order; everything else stays 0 (random order by random_key).
    scores = np.asarray([1.0 - rank / (len(picked_ids) + 1) for rank in range(len(picked_ids))])
    return pool_scores_write(sample_ids=picked_ids, scores=scores)
