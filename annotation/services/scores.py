"""Writes of the pool's precomputed uncertainty scores, which order the labeling queue."""
from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, transaction

from annotation.models import Sample


@transaction.atomic
def sample_scores_write(*, sample_ids: Sequence[int], scores: Sequence[float]) -> int:
    """Write precomputed uncertainty scores in bulk; return how many rows were updated."""
    if not sample_ids:
        return 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Sample._meta.db_table} AS s SET score = v.score "
                "FROM unnest(%s::bigint[], %s::float8[]) AS v(id, score) WHERE s.id = v.id",
                [list(map(int, sample_ids)), list(map(float, scores))],
            )
            return cursor.rowcount
    by_id = dict(zip(map(int, sample_ids), map(float, scores)))
    samples = [Sample(pk=pk, score=score) for pk, score in by_id.items()]
    Sample.objects.bulk_update(samples, ["score"], batch_size=500)
    return len(samples)
