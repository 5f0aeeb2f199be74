"""Write a pool's scores in bulk: COPY into a temporary table and one UPDATE on PostgreSQL.

A rescoring scores every unlabeled pool sample but stores only the top of each chunk
(``pool_chunk_ranking_write``): the queue reads samples by score, and annotators label a
few batches between two retrains, so the order of the rest is never read. Writing 1,000
rows per 50,000-sample chunk instead of all 50,000 is what keeps a retrain at 1M samples
in seconds: every rewritten row is a new row version plus an entry in the queue index.
Samples below the top keep score 0 and are handed out in random order.
"""
from __future__ import annotations

import numpy as np
from django.db import connection, transaction

from annotation.models import Sample
from annotation.services import sample_scores_write

TABLE = Sample._meta.db_table


def _unlabeled_pool(sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = set(
        Sample.objects.filter(pk__in=[int(i) for i in sample_ids]).in_pool().unlabeled()
        .values_list("pk", flat=True)
    )
    mask = np.fromiter((int(i) in keep for i in sample_ids), dtype=bool, count=len(sample_ids))
    return mask, sample_ids[mask]


def _copy_scores(cursor, sample_ids: np.ndarray, scores: np.ndarray) -> None:
    """Fill the session's staging table ``learning_score_in`` with (id, score) rows.

    Its primary key lets the anti-join in ``pool_chunk_ranking_write`` probe it by id; the
    planner cannot know a temporary table's size and otherwise rescanned it per row.
    """
    cursor.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS learning_score_in "
        "(id bigint PRIMARY KEY, score float8) ON COMMIT DELETE ROWS"
    )
    # ON COMMIT only empties it at the end of the outermost transaction: a second write
    # inside the same one would otherwise join the first write's rows too.
    cursor.execute("TRUNCATE learning_score_in")
    text = "\n".join(f"{i}\t{s!r}" for i, s in zip(np.asarray(sample_ids).tolist(),
                                                    np.asarray(scores, dtype=float).tolist()))
    with cursor.cursor.copy("COPY learning_score_in (id, score) FROM STDIN") as copy:
        copy.write(text)
        copy.write("\n")


def pool_scores_write(*, sample_ids: np.ndarray, scores: np.ndarray) -> int:
    """Store ``scores`` on the unlabeled pool samples among ``sample_ids``; return the count.

    Rows of labeled or test samples are skipped: the queue never orders them by score.
    """
    if len(sample_ids) == 0:
        return 0
    if connection.vendor != "postgresql":
        mask, ids = _unlabeled_pool(np.asarray(sample_ids))
        return sample_scores_write(sample_ids=ids.tolist(),
                                   scores=np.asarray(scores)[mask].tolist())
    with transaction.atomic(), connection.cursor() as cursor:
        _copy_scores(cursor, sample_ids, scores)
        cursor.execute(
            f"UPDATE {TABLE} AS s SET score = t.score FROM learning_score_in AS t "
            "WHERE s.id = t.id AND s.split = %s AND s.status = %s",
            [Sample.Split.POOL, Sample.Status.UNLABELED],
        )
        return cursor.rowcount


@transaction.atomic
def pool_chunk_ranking_write(
    *, project_id: int, lo: int, hi: int, sample_ids: np.ndarray, scores: np.ndarray, keep: int
) -> None:
    """Rank one chunk of the pool (samples ``lo <= id <= hi``) by ``scores``.

    ``sample_ids``/``scores`` are the chunk's unlabeled pool samples and their new scores.
    The ``keep`` highest go on their samples; samples of the chunk ranked by an earlier
    scoring and not now go back to 0. One transaction: the queue never sees the chunk
    without its top.
    """
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(sample_ids) > keep:
        top = np.argpartition(-scores, keep - 1)[:keep]
        sample_ids, scores = sample_ids[top], scores[top]
    if connection.vendor != "postgresql":
        unranked = (Sample.objects.filter(project_id=project_id, pk__gte=lo, pk__lte=hi,
                                          score__gt=0).in_pool().unlabeled())
        unranked.exclude(pk__in=sample_ids.tolist()).update(score=0.0)
        sample_scores_write(sample_ids=sample_ids.tolist(), scores=scores.tolist())
        return
    with connection.cursor() as cursor:
        _copy_scores(cursor, sample_ids, scores)
        cursor.execute(
            f"UPDATE {TABLE} AS s SET score = 0 WHERE s.project_id = %s AND s.split = %s"
            " AND s.status = %s AND s.score > 0 AND s.id BETWEEN %s AND %s"
            " AND NOT EXISTS (SELECT 1 FROM learning_score_in AS t WHERE t.id = s.id)",
            [project_id, Sample.Split.POOL, Sample.Status.UNLABELED, lo, hi],
        )
        cursor.execute(
            f"UPDATE {TABLE} AS s SET score = t.score FROM learning_score_in AS t "
            "WHERE s.id = t.id AND s.split = %s AND s.status = %s",
            [Sample.Split.POOL, Sample.Status.UNLABELED],
        )
