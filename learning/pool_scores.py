"""Write a pool's scores in bulk: COPY into a temporary table and one UPDATE on PostgreSQL."""
from __future__ import annotations

import numpy as np
from django.db import connection, transaction

from annotation.models import Sample
from annotation.services import sample_scores_write


def pool_scores_write(*, sample_ids: np.ndarray, scores: np.ndarray) -> int:
    """Store ``scores`` on the unlabeled pool samples among ``sample_ids``; return the count.

    Rows of labeled or test samples are skipped: the queue never orders them by score.
    """
    if len(sample_ids) == 0:
        return 0
    if connection.vendor != "postgresql":
        keep = set(
            Sample.objects.filter(pk__in=[int(i) for i in sample_ids]).in_pool().unlabeled()
            .values_list("pk", flat=True)
        )
        pairs = [(int(i), float(s)) for i, s in zip(sample_ids, scores) if int(i) in keep]
        return sample_scores_write(sample_ids=[i for i, _s in pairs], scores=[s for _i, s in pairs])
    table = Sample._meta.db_table
    data = np.empty(len(sample_ids), dtype=[("id", "<i8"), ("score", "<f8")])
    data["id"] = sample_ids
    data["score"] = scores
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS learning_score_in "
            "(id bigint, score float8) ON COMMIT DELETE ROWS"
        )
        # ON COMMIT only empties it at the end of the outermost transaction: a second write
        # inside the same one would otherwise join the first write's rows too.
        cursor.execute("TRUNCATE learning_score_in")
        # Text COPY: numpy formats a chunk of 100k rows in ~50 ms.
        text = "\n".join(f"{i}\t{s!r}" for i, s in zip(data["id"].tolist(), data["score"].tolist()))
        with cursor.cursor.copy("COPY learning_score_in (id, score) FROM STDIN") as copy:
            copy.write(text)
            copy.write("\n")
        cursor.execute(
            f"UPDATE {table} AS s SET score = t.score FROM learning_score_in AS t "
            "WHERE s.id = t.id AND s.split = %s AND s.status = %s",
            [Sample.Split.POOL, Sample.Status.UNLABELED],
        )
        return cursor.rowcount
