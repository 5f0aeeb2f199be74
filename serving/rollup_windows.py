"""Reading the rollups of a window: whole hours from the hour rollups, the minutes at either
edge from the minute rollups.

A 30-day window is 43,200 minutes, times the versions and labels seen in each: summing
that many minute rows per read is what made long windows slow. The hour rollups hold the
same counts per hour (the writer adds both in one flush), so a window reads at most 720
hour rows plus up to 59 minutes at each edge, and the sums are exactly the minute sums.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Q, QuerySet, Sum

from annotation.models import Project
from serving.models import (
    PredictionClassHourRollup,
    PredictionClassRollup,
    PredictionHourRollup,
    PredictionRollup,
)

HOUR = dt.timedelta(hours=1)


def _hour_floor(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RollupWindow:
    """The rollup rows of ``project`` from the minute ``first`` through ``end`` (inclusive),
    of one version number or all; ``hours``: read whole hours from the hour rollups (only
    when no bucket is finer than an hour)."""

    project: Project
    version: int | None
    first: dt.datetime
    end: dt.datetime
    hours: bool = True

    def _split(self) -> tuple[dt.datetime, dt.datetime] | None:
        """The whole hours [start, stop) inside the window, or None."""
        if not self.hours:
            return None
        start = _hour_floor(self.first)
        start = start if start == self.first else start + HOUR
        stop = _hour_floor(self.end)
        return (start, stop) if start < stop else None

    def _parts(self, minute_model, hour_model) -> list[tuple[QuerySet, str]]:
        """Querysets of the window's rows with their time field: the whole hours from the
        hour rollups and the edges from the minute rollups (or every minute)."""
        def scoped(queryset):
            queryset = queryset.filter(project=self.project)
            return queryset if self.version is None else queryset.filter(version=self.version)

        split = self._split()
        if split is None:
            return [(scoped(minute_model.objects.filter(minute__gte=self.first,
                                                        minute__lte=self.end)), "minute")]
        start, stop = split
        edges = (Q(minute__gte=self.first, minute__lt=start)
                 | Q(minute__gte=stop, minute__lte=self.end))
        return [(scoped(hour_model.objects.filter(hour__gte=start, hour__lt=stop)), "hour"),
                (scoped(minute_model.objects.filter(edges)), "minute")]

    @staticmethod
    def _union(querysets: list[QuerySet]) -> QuerySet:
        """One statement (UNION ALL) for the parts: one round trip per read."""
        first, *rest = querysets
        return first.union(*rest, all=True) if rest else first

    def buckets(self, trunc: type, columns: Sequence[str]) -> tuple[list[dict], dict[str, float]]:
        """``columns`` summed per bucket (``trunc``: TruncMinute, TruncHour, TruncDay) in
        time order, as dicts with ``bucket`` (empty buckets left out), and over the whole
        window (0 where nothing was counted)."""
        grouped = [queryset.annotate(bucket=trunc(field, tzinfo=dt.UTC)).values("bucket")
                   .annotate(**{c: Sum(c) for c in columns}).order_by()
                   for queryset, field in self._parts(PredictionRollup, PredictionHourRollup)]
        buckets: dict[dt.datetime, dict] = {}
        totals = dict.fromkeys(columns, 0)
        for row in self._union(grouped):
            into = buckets.setdefault(row["bucket"], dict.fromkeys(columns, 0))
            for column in columns:
                value = row[column] or 0
                into[column] += value
                totals[column] += value
        return [{"bucket": bucket, **buckets[bucket]} for bucket in sorted(buckets)], totals

    def classes(self) -> dict[str, int]:
        """Predictions per label, most predicted first (then by label)."""
        grouped = [queryset.values("label").annotate(n=Sum("count")).order_by()
                   for queryset, _field in self._parts(PredictionClassRollup,
                                                        PredictionClassHourRollup)]
        counts: dict[str, int] = defaultdict(int)
        for row in self._union(grouped):
            counts[row["label"]] += row["n"]
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
