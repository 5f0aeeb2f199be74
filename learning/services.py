"""Request, train, evaluate, promote model versions and rescore the pool."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time

import numpy as np
import scipy.sparse as sp
import sklearn
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.pipeline import Pipeline

from annotation.models import Project, Sample
from annotation.selectors import label_count_running, labeled_samples
from learning import artifacts, features, sparse_cache, strategies
from learning.estimators import DEFAULT_ESTIMATOR, build_estimator
from learning.models import ModelVersion
from learning.pool_scores import pool_chunk_ranking_write, pool_scores_write
from learning.selectors import (
    feature_cache_update,
    model_input_of_ids,
    model_input_random_subset,
    pool_chunk_bounds,
    pool_model_input_between,
    pool_excluded_ids_between,
    pool_unlabeled_ids_between,
    project_samples_fingerprint,
    sample_feature_matrix,
    take_rows,
)

logger = logging.getLogger(__name__)

# Samples per pool-scoring task: large enough that a task's fixed cost (loading the
# artifact, one COPY) is small against its work, small enough to spread over workers.
SCORE_CHUNK = 50000
# Featurizers are fitted on a random subsample of about this many of a project's samples.
FEATURIZER_FIT_ROWS = 100000
# The cold start clusters a random subsample of about this many unlabeled pool samples.
COLD_START_ROWS = 20000
# Batch-diverse strategies rank this many samples (times the batch size) at the top.
RANKED_BATCHES = 1
# Scored samples stored per chunk, in order (at least this many batches of the project):
# what annotators label before the next retrain reorders the queue. The rest keep score 0.
QUEUE_TOP_PER_CHUNK = 1000
QUEUE_TOP_BATCHES = 20


class TrainingError(Exception):
    """Training cannot proceed with the data at hand (one class, no labels, ...)."""


def _lock_project(project_id: int) -> Project:
    # NO KEY UPDATE: serializes a project's retrain requests and claims without making
    # label and lease inserts, whose foreign-key checks share-lock the project row, wait.
    return Project.objects.select_for_update(no_key=True).get(pk=project_id)


@transaction.atomic
def model_version_request(
    *, project: Project, trigger: str = ModelVersion.Trigger.MANUAL
) -> ModelVersion:
    """Queue a retrain for ``project``; a version already queued absorbs the request.

    The training task is enqueued only after the surrounding transaction commits, so the
    worker always finds the row.
    """
    _lock_project(project.pk)
    label_count = label_count_running(project=project)
    queued = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.QUEUED).first()
    if queued is not None:
        ModelVersion.objects.filter(pk=queued.pk).update(requested_at_label_count=label_count)
        queued.requested_at_label_count = label_count
        return queued
    number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        trigger=trigger,
        requested_at_label_count=label_count,
        estimator=(project.model_spec or {}).get("estimator", DEFAULT_ESTIMATOR),
        query_strategy=project.query_strategy,
    )
    from learning.tasks import model_version_train_task

    version_id = version.pk
    transaction.on_commit(lambda: model_version_train_task.delay(version_id))
    return version


def model_version_request_by(*, project: Project, user) -> ModelVersion:
    """Queue a manual retrain on behalf of ``user``; only owners and scientists may."""
    from annotation.services import SCIENCE_ROLES, member_require

    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    return model_version_request(project=project, trigger=ModelVersion.Trigger.MANUAL)


def _counted_from(project: Project) -> int:
    """The newest version's ``requested_at_label_count``: where the current batch began."""
    return (
        ModelVersion.objects.filter(project=project).order_by("-number")
        .values_list("requested_at_label_count", flat=True).first()
    ) or 0


def model_version_request_if_due(
    *, project: Project, label_count: int | None = None, counted_from: int | None = None
) -> ModelVersion | None:
    """Queue a retrain when ``batch_size`` labels arrived since the newest version's request.

    Runs on every label write, so it reads the running counter (maintained in the same
    transaction by every label writer) instead of counting the project's labels; a writer
    that already has the new count (``label_counts_add`` returns it) passes ``label_count``.

    A writer that read the newest version's ``requested_at_label_count`` with its label
    passes it as ``counted_from`` and saves that query. The label's transaction may have
    committed since, so that value may be stale: a retrain it finds due is confirmed by a
    fresh read under the project's lock, which ``model_version_request`` holds while it
    queues one, so two labels that both filled one batch never queue two retrains for it.
    """
    confirm = counted_from is not None
    if counted_from is None:
        counted_from = _counted_from(project)
    if label_count is None:
        label_count = label_count_running(project=project)
    if label_count - counted_from < project.batch_size:
        return None
    if not confirm:
        return model_version_request(project=project, trigger=ModelVersion.Trigger.BATCH)
    # Labels that filled the batch together all get here: a fresh read without the lock
    # sends away those that arrive after the first one's request committed.
    if label_count - _counted_from(project) < project.batch_size:
        return None
    with transaction.atomic():
        _lock_project(project.pk)
        if label_count - _counted_from(project) < project.batch_size:
            return None
        return model_version_request(project=project, trigger=ModelVersion.Trigger.BATCH)


def _claim(version_id: int) -> ModelVersion | None:
    """Move a queued version to training unless another one of its project is training."""
    with transaction.atomic():
        version = ModelVersion.objects.select_related("project").get(pk=version_id)
        _lock_project(version.project_id)
        version.refresh_from_db(fields=["status"])
        if version.status != ModelVersion.Status.QUEUED:
            return None
        stale_before = timezone.now() - dt.timedelta(seconds=settings.TRAINING_STALE_SECONDS)
        ModelVersion.objects.filter(
            project_id=version.project_id,
            status=ModelVersion.Status.TRAINING,
            started_at__lt=stale_before,
        ).update(status=ModelVersion.Status.FAILED, error="worker lost: training timed out")
        if ModelVersion.objects.filter(
            project_id=version.project_id, status=ModelVersion.Status.TRAINING
        ).exists():
            return None  # the running one kicks this version off when it finishes
        if ModelVersion.objects.filter(
            project_id=version.project_id, status=ModelVersion.Status.READY,
            score_chunks_total__isnull=False, scored_sample_count__isnull=True,
            scoring_started_at__gte=stale_before,
        ).exists():
            return None  # its pool rescoring is under way; its last chunk kicks this one off
        version.status = ModelVersion.Status.TRAINING
        version.started_at = timezone.now()
        version.save(update_fields=["status", "started_at"])
        return version


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


def _labeled_input(project: Project, rows: list[tuple[Sample, str, int]]):
    ids = np.fromiter((sample.pk for sample, _v, _id in rows), dtype=np.int64, count=len(rows))
    return model_input_of_ids(project=project, ids=ids)


def _fit(version: ModelVersion) -> None:
    project = version.project
    train_rows = labeled_samples(project=project, split=Sample.Split.POOL)
    test_rows = labeled_samples(project=project, split=Sample.Split.TEST)
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
    version.label_snapshot_sha256 = hashlib.sha256(
        ",".join(map(str, label_ids)).encode()
    ).hexdigest()
    if test_rows:
        y_test = [value for _s, value, _id in test_rows]
        version.metrics = _metrics(y_test, model.predict(_labeled_input(project, test_rows)), project.labels)
        version.accuracy = version.metrics["accuracy"]
        version.macro_f1 = version.metrics["macro_f1"]
    version.artifact_path, version.artifact_sha256 = artifacts.save(
        model, project_id=project.pk, number=version.number
    )
    version.sklearn_version = sklearn.__version__


def _served_macro_f1_on_current_test(project: Project, served: ModelVersion) -> float | None:
    """Re-evaluate the served model on today's test labels, so both compete on equal data."""
    test_rows = labeled_samples(project=project, split=Sample.Split.TEST)
    if not test_rows:
        return None
    estimator = artifacts.load(path=served.artifact_path, sha256=served.artifact_sha256)
    X_test = sample_feature_matrix(project=project, samples=[s for s, _v, _id in test_rows])
    y_test = [value for _s, value, _id in test_rows]
    present = sorted(set(y_test))
    return float(
        f1_score(y_test, estimator.predict(X_test), labels=present, average="macro", zero_division=0)
    )


@transaction.atomic
def model_version_promote(*, version: ModelVersion, note: str = "") -> ModelVersion:
    """Serve ``version`` instead of whichever version its project serves now."""
    if version.status != ModelVersion.Status.READY:
        raise TrainingError(f"version {version.number} is {version.status}, not ready")
    _lock_project(version.project_id)
    ModelVersion.objects.filter(project_id=version.project_id, is_served=True).update(
        is_served=False
    )
    version.is_served = True
    version.promotion_note = note or version.promotion_note
    version.save(update_fields=["is_served", "promotion_note"])
    return version


def _promote_if_better(version: ModelVersion) -> None:
    project = version.project
    served = ModelVersion.objects.filter(project=project, is_served=True).first()
    if served is None:
        model_version_promote(version=version, note="first ready model")
        return
    if project.promotion == Project.Promotion.LATEST:
        model_version_promote(version=version, note="latest ready version (project setting)")
        return
    if version.macro_f1 is None:
        version.promotion_note = "not promoted: no labeled test samples to compare on"
        version.save(update_fields=["promotion_note"])
        return
    try:
        served_f1 = _served_macro_f1_on_current_test(project, served)
    except artifacts.ArtifactError as exc:
        logger.error("served artifact of %s unusable: %s", served, exc)
        served_f1 = None
    if served_f1 is None or version.macro_f1 >= served_f1:
        model_version_promote(
            version=version,
            note=f"macro-F1 {version.macro_f1:.3f} vs served v{served.number} "
            f"{'n/a' if served_f1 is None else f'{served_f1:.3f}'} on the same test labels",
        )
    else:
        version.promotion_note = (
            f"not promoted: macro-F1 {version.macro_f1:.3f} < served v{served.number} "
            f"{served_f1:.3f} on the same test labels"
        )
        version.save(update_fields=["promotion_note"])


def _scores(project: Project, estimator, X, *, seed: int) -> np.ndarray:
    return strategies.uncertainty_scores(estimator, X, strategy=project.query_strategy, seed=seed)


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
    from celery import group

    from learning.tasks import pool_score_chunk_task

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
    group(
        pool_score_chunk_task.si(version.pk, scorer.pk, lo, hi) for lo, hi in bounds
    ).apply_async()
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
    n = project.batch_size * RANKED_BATCHES
    pool = Sample.objects.filter(project=project).in_pool().unlabeled()
    top = list(pool.order_by("-score", "random_key")
               .values_list("pk", flat=True)[: n * strategies.DEFAULT_CANDIDATES_PER_PICK])
    if len(top) <= 1:
        return
    extra = list(pool.exclude(pk__in=top).order_by("random_key").values_list("pk", flat=True)[:n])
    candidate_ids = np.asarray(sorted(top + extra), dtype=np.int64)
    clf, X = _split_featurizer(estimator, _model_input_of_ids(project, candidate_ids))
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


def model_version_train(*, version_id: int) -> ModelVersion | None:
    """Train a queued version end to end: fit, evaluate, save, promote, rescore the pool.

    Returns None when the version was not claimed (already done, or another version of the
    project is training or rescoring). A failure is recorded on the version and never
    unserves a model. Rescoring runs as a Celery group; its last chunk starts the next
    queued retrain, so one project has one retrain cycle in flight at a time.
    """
    version = _claim(version_id)
    if version is None:
        return None
    try:
        _fit(version)
        version.status = ModelVersion.Status.READY
    except Exception as exc:  # any failure must be recorded on the version, never lost
        logger.exception("training %s failed", version)
        version.status = ModelVersion.Status.FAILED
        version.error = f"{type(exc).__name__}: {exc}"
    version.finished_at = timezone.now()
    version.save()
    if version.status == ModelVersion.Status.READY:
        try:
            _promote_if_better(version)
        except Exception as exc:  # the served model stays; say why
            logger.exception("promoting %s failed", version)
            ModelVersion.objects.filter(pk=version.pk).update(
                promotion_note=f"not promoted: {type(exc).__name__}: {exc}"
            )
        served = ModelVersion.objects.filter(project=version.project, is_served=True).first()
        if served is not None:
            try:
                pool_score_start(version=version, scorer=served)
            except Exception as exc:  # the version stays ready; the queue keeps old scores
                logger.exception("rescoring the pool of %s failed", version.project)
                ModelVersion.objects.filter(pk=version.pk).update(
                    error=f"pool rescoring failed: {type(exc).__name__}: {exc}",
                    score_chunks_total=None,
                )
            else:
                return version
    _start_next_queued(version.project_id)
    return version


def _start_next_queued(project_id: int) -> None:
    from learning.tasks import model_version_train_task

    queued = (
        ModelVersion.objects.filter(project_id=project_id, status=ModelVersion.Status.QUEUED)
        .order_by("number")
        .values_list("pk", flat=True)
        .first()
    )
    if queued is not None:
        transaction.on_commit(lambda: model_version_train_task.delay(queued))
