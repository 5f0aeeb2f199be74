"""The model's input for a project's samples: pixels, texts or table rows, in id order.

Images and numeric tables are read through a per-project feature cache on disk
(``learning.feature_cache``), which the readers here append to on first read of new
samples; texts and mixed tables come straight from the database. Also the id ranges
of the pool that scoring splits into chunks.

Model input is what a project's artifact takes: pixel rows for images, texts for text, a
table (column -> value) for tabular; the fitted featurizer inside the artifact does the rest.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from functools import partial
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count, Max, Min, QuerySet

from annotation.models import Project, Sample
from annotation.selectors import labeled_samples
from learning import feature_cache, features, table_copy

logger = logging.getLogger(__name__)

# Samples read from the database per query when filling the feature cache.
CACHE_FILL_BATCH = 20000
# New numeric rows from which a fill reads the upper half of the ids on a second connection.
PARALLEL_FILL_ROWS = 200_000


def _image_rows(project: Project, image_names: Sequence[str]) -> np.ndarray:
    def streams():
        for name in image_names:
            with default_storage.open(name, "rb") as stream:
                yield stream

    return features.image_matrix(
        streams(), size=project.image_size, max_pixels=settings.MAX_IMAGE_PIXELS
    )


def tabular_columns(project: Project, rows: Sequence[dict] = ()) -> list[str]:
    """Return the project's feature columns: those of its import, else those ``rows`` use."""
    if project.columns:
        return list(project.columns)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row or {}))
    return list(seen)


def _tabular_frame(project: Project, rows: Sequence[dict | None]) -> pd.DataFrame:
    frame = features.tabular_frame([row or {} for row in rows])
    return frame.reindex(columns=tabular_columns(project, rows))


def sample_feature_matrix(*, project: Project, samples: Sequence[Sample]):
    """Return the model input of ``samples``, one row each, in the given order."""
    if project.kind == Project.Kind.IMAGE:
        return _image_rows(project, [sample.image.name for sample in samples])
    if project.kind == Project.Kind.TEXT:
        return [sample.text for sample in samples]
    return _tabular_frame(project, [sample.values for sample in samples])


def take_rows(X, rows: np.ndarray):
    """Return rows ``rows`` of model input ``X`` (array, DataFrame or list of texts)."""
    if isinstance(X, pd.DataFrame):
        return X.iloc[rows].reset_index(drop=True)
    if isinstance(X, np.ndarray):
        return X[rows]
    return [X[i] for i in rows]


def _cache_dir(project: Project) -> Path | None:
    """Return the project's feature cache directory, or None for kinds read from the DB."""
    if project.kind == Project.Kind.IMAGE:
        key = f"image-{project.image_size}"
    elif project.kind == Project.Kind.TABULAR and project.columns:
        key = "tabular-" + hashlib.sha256("\x1f".join(project.columns).encode()).hexdigest()[:12]
    else:
        return None  # texts stay in the database; TF-IDF is refitted on them each retrain
    return Path(settings.LOCAL_CACHE_DIR) / "features" / str(project.pk) / key


def _numeric_table(project: Project, rows: Sequence[dict | None]) -> np.ndarray | None:
    """Return ``rows`` as a float matrix in column order (NaN when missing), or None when
    some value is not a number (such projects are read from the database every time).

    Numbers, numeric strings and None go through numpy in one call; pandas typing each
    column took most of the first retrain after a large import.
    """
    columns = tabular_columns(project, rows)
    table = [[(row or {}).get(c) for c in columns] for row in rows]
    try:
        matrix = np.array(table, dtype=np.float64).reshape(len(table), len(columns))
    except (TypeError, ValueError, OverflowError):
        return None  # a value that is not a number
    missing = np.isnan(matrix)
    if missing.any() and any(table[i][k] is not None for i, k in zip(*np.nonzero(missing))):
        return None  # "nan" given as a value: not a number to cache
    return matrix


def feature_cache_update(*, project: Project) -> Path | None:
    """Append the rows of samples created since the cache was last filled; return its dir.

    Returns None when the project's kind is not cached (text, or non-numeric tabular).
    """
    directory = _cache_dir(project)
    if directory is None or (directory / "uncacheable").exists():
        return None
    after = feature_cache.max_id(directory)
    if project.kind == Project.Kind.TABULAR and connection.vendor == "postgresql":
        filled = _numeric_cache_copy(project, directory, after)
        if filled is not None:
            return directory if filled else None
    while True:
        qs = Sample.objects.filter(project=project, pk__gt=after).order_by("pk")
        field = "image" if project.kind == Project.Kind.IMAGE else "values"
        batch = list(qs.values_list("pk", field, "split")[:CACHE_FILL_BATCH])
        if not batch:
            return directory
        payloads = [payload for _pk, payload, _split in batch]
        if project.kind == Project.Kind.IMAGE:
            rows = _image_rows(project, payloads)
        else:
            rows = _numeric_table(project, payloads)
            if rows is None:
                directory.mkdir(parents=True, exist_ok=True)
                (directory / "uncacheable").touch()
                return None
        ids = np.fromiter((pk for pk, _v, _s in batch), dtype=np.int64, count=len(batch))
        test = np.fromiter((split == Sample.Split.TEST for _pk, _v, split in batch),
                           dtype=np.bool_, count=len(batch))
        feature_cache.append(directory, ids, rows, test)
        after = int(ids[-1])


def _numeric_cache_copy(project: Project, directory: Path, after: int) -> bool | None:
    """Append the numeric rows of samples with ids above ``after`` in one binary COPY;
    return True when cached, False when some row holds NaN or an infinity as a value (the
    table is marked uncacheable), None when a value is not a float8 (read it the slow way).
    """
    stats = Sample.objects.filter(project=project, pk__gt=after).aggregate(
        n=Count("id"), last=Max("id"))
    if not stats["n"]:
        return True
    columns = tabular_columns(project)
    kwargs = dict(project_id=project.pk, columns=columns, after=after, upto=stats["last"])
    if stats["n"] >= PARALLEL_FILL_ROWS and not connection.in_atomic_block:
        directory.mkdir(parents=True, exist_ok=True)
        read = partial(table_copy.numeric_rows_parallel,
                       spill=directory / f"spill-{os.getpid()}-{threading.get_ident()}.tmp")
    else:
        read = table_copy.numeric_rows

    def blocks():
        for ids, bad, test, rows in read(**kwargs):
            if bad.any():  # nothing of this fill is kept
                raise _NotCacheable(int(ids[bad][0]))
            yield ids, rows, test

    try:
        with transaction.atomic():  # a cast error must not leave an outer transaction broken
            feature_cache.append_blocks(directory, stats["n"], len(columns), blocks())
    except table_copy.NotNumeric:
        return None
    except _NotCacheable as exc:
        logger.info("sample %s of %s holds NaN or an infinity: not cached", exc.args[0], project)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "uncacheable").touch()
        return False
    return True


class _NotCacheable(Exception):
    """A row holds NaN or an infinity as a value (args: its sample id)."""


def _as_input(project: Project, rows: np.ndarray):
    if project.kind == Project.Kind.TABULAR:
        return pd.DataFrame(rows, columns=tabular_columns(project))
    return rows


def project_samples_fingerprint(*, project: Project) -> str:
    """Return a key that changes whenever samples are added to or removed from ``project``
    (their payloads never change after import)."""
    stats = Sample.objects.filter(project=project).aggregate(n=Count("id"), last=Max("id"))
    return f"{stats['n']}-{stats['last']}"


def pool_chunk_bounds(*, project: Project, size: int) -> list[tuple[int, int]]:
    """Split the unlabeled pool into inclusive sample-id ranges of about ``size`` samples.

    Ranges are of equal width between the pool's lowest and highest id: a project's ids are
    nearly dense (imports take them in runs), and one aggregate is all it costs, where
    numbering a million rows to cut exact chunks took a second.
    """
    span = _cached_pool_span(project)
    if span is None:
        stats = Sample.objects.filter(project=project).in_pool().unlabeled().aggregate(
            n=Count("id"), lo=Min("id"), hi=Max("id"))
        span = (stats["n"], stats["lo"], stats["hi"])
    n, lo, hi = span
    if not n:
        return []
    chunks = -(-n // size)
    width = -(-(hi - lo + 1) // chunks)
    return [(start, min(start + width - 1, hi)) for start in range(lo, hi + 1, width)]


def _cached_pool_span(project: Project) -> tuple[int, int, int] | None:
    """(unlabeled pool count, lowest id, highest id) from the cache's ids and test flags
    less the labeled pool samples (one index lookup), where the database's aggregate reads
    every row of the table (the id is in no index of the pool). Callers bring the cache
    up to date first (``feature_cache_update``)."""
    directory = _cache_dir(project)
    if directory is None or (directory / "uncacheable").exists():
        return None
    ids = _cached_unlabeled_pool_ids(project, directory)
    if ids is None:
        return None
    return (len(ids), int(ids[0]), int(ids[-1])) if len(ids) else (0, 0, 0)


def _cached_unlabeled_pool_ids(project: Project, directory: Path) -> np.ndarray | None:
    """The cached unlabeled pool's ids: the cache's pool ids less the labeled pool samples
    (one index lookup); None when a segment does not say which samples are test ones."""
    ids = feature_cache.pool_ids(directory)
    if ids is None:
        return None
    labeled = np.fromiter(Sample.objects.filter(project=project).in_pool().labeled()
                          .values_list("pk", flat=True), dtype=np.int64)
    return ids[~np.isin(ids, labeled)]


def pool_unlabeled_ids_between(*, project: Project, lo: int, hi: int) -> np.ndarray:
    """Return the ids of the project's unlabeled pool samples with ``lo <= id <= hi``, sorted."""
    ids = (Sample.objects.filter(project=project, pk__gte=lo, pk__lte=hi).in_pool().unlabeled()
           .order_by("pk").values_list("pk", flat=True))
    return np.fromiter(ids, dtype=np.int64)


def pool_excluded_ids_between(*, project: Project, lo: int, hi: int) -> np.ndarray:
    """Return the ids of the project's samples with ``lo <= id <= hi`` that are labeled or
    in the test split (not to be scored), sorted: usually few, unlike the unlabeled pool."""
    ids = (Sample.objects.filter(project=project, pk__gte=lo, pk__lte=hi)
           .exclude(split=Sample.Split.POOL, status=Sample.Status.UNLABELED)
           .order_by("pk").values_list("pk", flat=True))
    return np.fromiter(ids, dtype=np.int64)


def model_input_random_subset(
    *, project: Project, max_rows: int, pool_only: bool = False
) -> tuple[np.ndarray, object]:
    """Return (ids ascending, model input) of about ``max_rows`` samples drawn at random
    (every sample when there are fewer): the project's, or its unlabeled pool's.

    Cached kinds draw from the ids in the feature cache (a generator seeded by the
    project), so the database counts nothing: counting and scanning a million rows for
    the draw, twice a first retrain (featurizer and drift reference), took longer than the
    fit. Others are drawn by ``random_key`` in the database. Either way a million-sample
    project never loads more than the subset.
    """
    directory = feature_cache_update(project=project)
    if directory is not None:
        ids = _cached_subset_ids(project, directory, max_rows, pool_only)
        rows = None if ids is None else feature_cache.rows_of(directory, ids)
        if rows is not None:
            return ids, _as_input(project, rows)
    samples = Sample.objects.filter(project=project)
    if pool_only:
        samples = samples.in_pool().unlabeled()
    stats = samples.aggregate(n=Count("id"), lo=Min("random_key"), hi=Max("random_key"))
    if stats["n"] > max_rows:
        # Keys are uniform over the set's own range (the test split took the lowest ones).
        cut = stats["lo"] + (stats["hi"] - stats["lo"]) * max_rows / stats["n"]
        samples = samples.filter(random_key__lt=cut)
    samples = samples.order_by("pk")
    if directory is not None:
        ids = np.fromiter(samples.values_list("pk", flat=True), dtype=np.int64)
        rows = feature_cache.rows_of(directory, ids)
        if rows is not None:
            return ids, _as_input(project, rows)
    return _model_input_of_rows(project, samples)


def _cached_subset_ids(project: Project, directory: Path, max_rows: int,
                       pool_only: bool) -> np.ndarray | None:
    """About ``max_rows`` ids drawn at random from the cache's (or from its unlabeled
    pool's), ascending; None when the cache cannot say which are pool samples."""
    if pool_only:
        ids = _cached_unlabeled_pool_ids(project, directory)
    else:
        ids = feature_cache.cached_ids(directory)
    if ids is None or not len(ids):
        return None
    if len(ids) > max_rows:
        ids = np.sort(np.random.default_rng(project.pk).choice(ids, max_rows, replace=False))
    return ids


def _model_input_of_rows(project: Project, samples: QuerySet[Sample]) -> tuple[np.ndarray, object]:
    """Return (ids, model input) of ``samples`` (ordered by id) read from the database."""
    field = {Project.Kind.TEXT: "text", Project.Kind.IMAGE: "image"}.get(project.kind, "values")
    pairs = list(samples.values_list("pk", field))
    ids = np.fromiter((pk for pk, _v in pairs), dtype=np.int64, count=len(pairs))
    payloads = [value for _pk, value in pairs]
    if project.kind == Project.Kind.TEXT:
        return ids, payloads
    if project.kind == Project.Kind.IMAGE:
        return ids, _image_rows(project, payloads)
    return ids, _tabular_frame(project, payloads)


def pool_rows_between(*, project: Project, lo: int, hi: int) -> tuple[np.ndarray, object]:
    """Return (ids, rows) of the samples to score with ``lo <= id <= hi``, as stored:
    cached numeric rows (a float matrix in ``tabular_columns`` order, NaN when missing),
    else the payloads of the unlabeled pool samples in the range (texts, column -> value
    rows, pixel rows).

    Cached kinds return every cached sample in the range (writes skip labeled ones).
    """
    directory = _cache_dir(project)
    if directory is not None and not (directory / "uncacheable").exists():
        ids, rows = feature_cache.rows_between(directory, lo, hi)
        if rows is not None:
            return ids, rows
    samples = Sample.objects.filter(project=project, pk__gte=lo, pk__lte=hi).in_pool().unlabeled()
    if project.kind != Project.Kind.TABULAR:
        return _model_input_of_rows(project, samples.order_by("pk"))
    pairs = list(samples.order_by("pk").values_list("pk", "values"))
    ids = np.fromiter((pk for pk, _v in pairs), dtype=np.int64, count=len(pairs))
    return ids, [values or {} for _pk, values in pairs]


def pool_unlabeled_rows_between(*, project: Project, lo: int, hi: int) -> tuple[np.ndarray, object]:
    """Return (ids, rows) of the unlabeled pool samples with ``lo <= id <= hi``, as
    ``pool_rows_between`` stores them.

    From the cache, the test split is dropped by the flag kept beside each row (a sample's
    split never changes) and the labeled samples by one index lookup, instead of reading
    every row of the range in the database to learn which are still unlabeled.
    """
    directory = _cache_dir(project)
    if directory is not None and not (directory / "uncacheable").exists():
        ids, rows, test = feature_cache.rows_and_test_between(directory, lo, hi)
        if rows is not None and test is not None:
            labeled = np.fromiter(
                Sample.objects.filter(project=project, pk__gte=lo, pk__lte=hi).in_pool()
                .labeled().values_list("pk", flat=True), dtype=np.int64)
            keep = np.flatnonzero(~test & ~np.isin(ids, labeled))
            return ids[keep], rows[keep]
        if rows is not None:  # a segment written before the flags: ask the database
            excluded = pool_excluded_ids_between(project=project, lo=lo, hi=hi)
            keep = np.flatnonzero(~np.isin(ids, excluded, assume_unique=True))
            return ids[keep], rows[keep]
    return pool_rows_between(project=project, lo=lo, hi=hi)


def pool_model_input_between(*, project: Project, lo: int, hi: int) -> tuple[np.ndarray, object]:
    """Return (ids, model input) of the samples to score with ``lo <= id <= hi``: the rows
    of ``pool_unlabeled_rows_between`` in the shape the project's artifact takes."""
    ids, rows = pool_unlabeled_rows_between(project=project, lo=lo, hi=hi)
    if isinstance(rows, np.ndarray):
        return ids, _as_input(project, rows)
    if project.kind == Project.Kind.TABULAR:
        return ids, _tabular_frame(project, rows)
    return ids, rows


def model_input_of_ids(*, project: Project, ids: np.ndarray):
    """Return the model input of samples ``ids`` in that order: from the cache when it
    holds them all, else from the database."""
    directory = _cache_dir(project)
    if directory is not None and not (directory / "uncacheable").exists():
        rows = feature_cache.rows_of(directory, ids)
        if rows is not None:
            return _as_input(project, rows)
    samples = {s.pk: s for s in Sample.objects.filter(pk__in=[int(i) for i in ids])}
    return sample_feature_matrix(project=project, samples=[samples[int(i)] for i in ids])


def project_labeled_payloads(*, project: Project) -> tuple[object, np.ndarray]:
    """Return the featurizer input and current label of every labeled sample, pool and test.

    Image projects yield pixel rows; text projects, texts; tabular projects, column -> value
    rows. For replaying active learning on what annotators already labeled.
    """
    rows = labeled_samples(project=project, split=Sample.Split.POOL) + labeled_samples(
        project=project, split=Sample.Split.TEST
    )
    samples = [sample for sample, _value, _id in rows]
    y = np.asarray([value for _sample, value, _id in rows], dtype=str)
    if project.kind == Project.Kind.IMAGE:
        return sample_feature_matrix(project=project, samples=samples), y
    if project.kind == Project.Kind.TEXT:
        return [sample.text for sample in samples], y
    return [sample.values or {} for sample in samples], y
