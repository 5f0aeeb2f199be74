"""Reads for the annotators page and API: each member's pace, time, skips and agreement.

Everything is counted over a window (the last 24 h, 7 d, 30 d, or all time) and over the
project's members only (labels of the API feedback user, who is no member, are left out).
A fixed number of queries, whatever the number of labels, each aggregated in the database:

1. the members;
2. per person, the labels of the window: count, labels without a time, active hours,
   superseded and corrected ones, corrections made;
3. per person, the median and p90 time: the times ranked in the database, which returns
   only the ranks around each percentile;
4. per person, the skips of the window;
5. per pair of people and pair of values, the samples both labeled (Cohen's κ);
6. (overlap > 1) per number of raters, value and count, the samples (Fleiss' κ);
7. each person's latest ``MODEL_SAMPLE_PER_ANNOTATOR`` current labels with their samples,
   which the served model predicts through ``hooks.suggestions`` (serving's queries).

Definitions (the page states them too):

- **labels**: label rows the person gave in the window on the labeling page or API (and
  imports with labels, which carry no time); review corrections are counted apart.
- **active hour**: a clock hour (UTC) in which the person gave at least one label; labels
  per active hour = labels / active hours, so breaks do not count against anyone.
- **time per label**: ``Label.duration_ms`` as sent by the labeling client; labels without
  one are left out of the median and p90 and counted as ``untimed``.
- **skips**: samples the person skipped in the window (``Lease.skipped``).
- **superseded**: the person's labels of the window that are no longer current (undone,
  changed, or corrected in review); **corrected**: those replaced by a review correction.
- **agreement**: over current labels given in the window, a sample counting for a pair
  (Cohen) or for Fleiss' κ when the labels were all given in the window.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import (
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models.functions import RowNumber, TruncHour
from django.db.models.expressions import Window
from django.utils import timezone

from annotation import hooks
from annotation.access import SCIENCE_ROLES, member_require
from annotation.agreement import FleissCell, cohen_kappa, fleiss_kappa_from_cells
from annotation.models import Label, Lease, Membership, Project, Sample
from annotation.selectors import project_members

WINDOWS: dict[str, dt.timedelta | None] = {
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
    "all": None,
}
WINDOW_NAMES = {"24h": "24 h", "7d": "7 days", "30d": "30 days", "all": "all time"}
DEFAULT_WINDOW = "7d"
# Labels per person the served model predicts for its agreement: the latest ones.
MODEL_SAMPLE_PER_ANNOTATOR = 200
# A review correction's label is written within this long of its stamp on the old labels.
_CORRECTION_DELAY = dt.timedelta(seconds=2)


@dataclass(frozen=True)
class ModelAgreement:
    """How often a person's latest labels equal the served model's prediction."""

    compared: int
    agreed: int
    test_compared: int  # of those, on the held-out test split (the model never learns them)
    test_agreed: int

    @property
    def share(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def test_share(self) -> float | None:
        return self.test_agreed / self.test_compared if self.test_compared else None


@dataclass(frozen=True)
class AnnotatorRow:
    user_id: int
    username: str
    role: str
    labels: int = 0
    active_hours: int = 0
    untimed: int = 0
    median_ms: float | None = None
    p90_ms: float | None = None
    skips: int = 0
    superseded: int = 0
    corrected: int = 0
    corrections_made: int = 0
    model: ModelAgreement | None = None

    @property
    def labels_per_active_hour(self) -> float | None:
        return self.labels / self.active_hours if self.active_hours else None

    @property
    def timed(self) -> int:
        return self.labels - self.untimed

    @property
    def median_seconds(self) -> float | None:
        return None if self.median_ms is None else self.median_ms / 1000

    @property
    def p90_seconds(self) -> float | None:
        return None if self.p90_ms is None else self.p90_ms / 1000


@dataclass(frozen=True)
class PairAgreement:
    """Two people on the samples both labeled (current labels): Cohen's κ and raw agreement."""

    first_id: int
    second_id: int
    first: str
    second: str
    shared: int
    agreed: int
    kappa: float | None

    @property
    def observed(self) -> float | None:
        return self.agreed / self.shared if self.shared else None


@dataclass(frozen=True)
class FleissSummary:
    applicable: bool  # the project's overlap is above 1
    items: int = 0
    ratings: int = 0
    kappa: float | None = None


@dataclass(frozen=True)
class AnnotatorStats:
    window: str
    since: dt.datetime | None
    until: dt.datetime
    rows: list[AnnotatorRow]
    pairs: list[PairAgreement]
    fleiss: FleissSummary
    model_version: int | None  # the served version whose predictions were compared
    model_sample_limit: int = MODEL_SAMPLE_PER_ANNOTATOR

    @property
    def window_name(self) -> str:
        return WINDOW_NAMES[self.window]

    @property
    def matrix(self) -> list[tuple[AnnotatorRow, list[PairAgreement | None]]]:
        """Rows and columns: the people who gave labels in the window. A cell is None on
        the diagonal and for a pair with no shared sample."""
        pairs = {(pair.first_id, pair.second_id): pair for pair in self.pairs}
        people = [row for row in self.rows if row.labels]
        return [(row, [pairs.get((min(row.user_id, other.user_id),
                                  max(row.user_id, other.user_id)))
                       if row.user_id != other.user_id else None for other in people])
                for row in people]


def window_since(window: str, now: dt.datetime) -> dt.datetime | None:
    """Return where ``window`` starts before ``now`` (None: all time); KeyError if unknown."""
    length = WINDOWS[window]
    return None if length is None else now - length


@dataclass(frozen=True)
class _Span:
    since: dt.datetime | None  # None: from the start
    until: dt.datetime


def _labels(project: Project, people: Sequence[int], span: _Span) -> QuerySet[Label]:
    """The project's labels by ``people`` given in ``span`` (index: annotator, created_at)."""
    labels = Label.objects.filter(annotator_id__in=people, sample__project=project,
                                  created_at__lte=span.until)
    return labels if span.since is None else labels.filter(created_at__gte=span.since)


def _label_counts(project: Project, people: Sequence[int],
                  span: _Span) -> dict[int, dict]:
    given = Q(is_correction=False)
    superseded = given & Q(superseded_at__isnull=False)
    # A correction stamps the labels it supersedes, then writes itself a moment later; an
    # earlier undo of the same sample is no correction.
    superseded_at = OuterRef("superseded_at")
    by_correction = Exists(Label.objects.filter(
        sample_id=OuterRef("sample_id"), is_correction=True, created_at__gte=superseded_at,
        created_at__lte=ExpressionWrapper(superseded_at + _CORRECTION_DELAY,
                                          output_field=DateTimeField())))
    aggregates = {
        "labels": Count("pk", filter=given),
        "untimed": Count("pk", filter=given & Q(duration_ms__isnull=True)),
        "active_hours": Count(TruncHour("created_at", tzinfo=dt.UTC), filter=given,
                              distinct=True),
        "superseded": Count("pk", filter=superseded),
        "corrected": Count("pk", filter=superseded & Q(by_correction)),
        "corrections_made": Count("pk", filter=Q(is_correction=True)),
    }
    rows = _labels(project, people, span).order_by().values("annotator_id").annotate(**aggregates)
    counts = {row.pop("annotator_id"): row for row in rows}
    for person, percentiles in _duration_percentiles(project, people, span).items():
        counts[person].update(percentiles)
    return counts


# The percentiles shown, in tenths: the median and p90.
_PERCENTILES = {"median_ms": 5, "p90_ms": 9}


def _duration_percentiles(project: Project, people: Sequence[int],
                          span: _Span) -> dict[int, dict[str, float]]:
    """Median and p90 of each person's label times in ``span``, from one query.

    The q-th percentile of n sorted times d_0 ≤ … ≤ d_(n-1) interpolates linearly at rank
    q·(n − 1), as numpy's default and PostgreSQL's ``percentile_cont`` do. SQLite has no
    percentile aggregate, so the database numbers the times per person (window functions,
    both databases) and returns only the two ranks around each percentile: at most four
    rows per person, however many labels there are.
    """
    times = (_labels(project, people, span).filter(is_correction=False, duration_ms__isnull=False)
             .order_by().values("annotator_id", "duration_ms"))
    times_sql, params = times.query.sql_with_params()
    # (n - 1) * tenths / 10 in integers: the lower rank, truncated alike by both databases.
    ranks = ", ".join(f"(n - 1) * {t} / 10, (n - 1) * {t} / 10 + 1"
                      for t in _PERCENTILES.values())
    sql = (
        f"WITH times (annotator_id, d) AS ({times_sql}),"
        " ranked AS (SELECT annotator_id, d, COUNT(*) OVER (PARTITION BY annotator_id) AS n,"
        "            ROW_NUMBER() OVER (PARTITION BY annotator_id ORDER BY d) - 1 AS r"
        "            FROM times)"
        f" SELECT annotator_id, n, r, d FROM ranked WHERE r IN ({ranks})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    by_rank: dict[int, dict[int, float]] = defaultdict(dict)
    sizes: dict[int, int] = {}
    for person, n, rank, duration in rows:
        by_rank[person][rank] = float(duration)
        sizes[person] = n
    result = {}
    for person, n in sizes.items():
        values = {}
        for name, tenths in _PERCENTILES.items():
            low, rest = divmod((n - 1) * tenths, 10)
            below = by_rank[person][low]
            above = by_rank[person].get(low + 1, below)
            values[name] = below + (above - below) * rest / 10
        result[person] = values
    return result


def _skips(project: Project, people: Sequence[int], span: _Span) -> dict[int, int]:
    # A skip stamps created_at and expires_at alike; expires_at is in the lease_held index.
    skips = Lease.objects.filter(project=project, annotator_id__in=people, skipped=True,
                                 expires_at__lte=span.until, created_at__lte=span.until)
    if span.since is not None:
        skips = skips.filter(expires_at__gte=span.since, created_at__gte=span.since)
    return dict(skips.order_by().values("annotator_id").annotate(n=Count("pk"))
                .values_list("annotator_id", "n"))


def _current(project: Project, people: Sequence[int], span: _Span) -> QuerySet[Label]:
    return _labels(project, people, span).filter(superseded_at__isnull=True)


def _pairs(project: Project, people: Sequence[int], span: _Span,
           names: dict[int, str]) -> list[PairAgreement]:
    """Cohen's κ per pair of people, from one GROUP BY over pairs of current labels."""
    # One filter() call: both conditions on sample__labels apply to the same joined label.
    other = {"sample__labels__superseded_at__isnull": True,
             "sample__labels__annotator_id__in": people,
             "sample__labels__annotator_id__gt": F("annotator_id")}
    other["sample__labels__created_at__lte"] = span.until
    if span.since is not None:
        other["sample__labels__created_at__gte"] = span.since
    cells = (_current(project, people, span).filter(**other).order_by()
             .values_list("annotator_id", "sample__labels__annotator_id", "value",
                          "sample__labels__value")
             .annotate(n=Count("pk")))
    tables: dict[tuple[int, int], list[tuple[str, str, int]]] = defaultdict(list)
    for first, second, first_value, second_value, n in cells:
        tables[(first, second)].append((first_value, second_value, n))
    pairs = []
    for (first, second), counts in sorted(tables.items()):
        categories = sorted({v for a, b, _n in counts for v in (a, b)})
        index = {value: i for i, value in enumerate(categories)}
        table = np.zeros((len(categories), len(categories)), dtype=np.int64)
        for a, b, n in counts:
            table[index[a], index[b]] += n
        pairs.append(PairAgreement(
            first_id=first, second_id=second, first=names.get(first, str(first)),
            second=names.get(second, str(second)), shared=int(table.sum()),
            agreed=int(np.trace(table)), kappa=cohen_kappa(table)))
    return pairs


def _fleiss(project: Project, people: Sequence[int], span: _Span) -> FleissSummary:
    """Fleiss' κ over samples with two or more current labels, from one grouped query."""
    if project.overlap <= 1:
        return FleissSummary(applicable=False)
    if not people:
        return FleissSummary(applicable=True)
    current_sql, params = (_current(project, people, span).order_by()
                           .values("sample_id", "value").query.sql_with_params())
    sql = (
        f"WITH cur (sample_id, value) AS ({current_sql}),"
        " raters AS (SELECT sample_id, COUNT(*) AS n FROM cur GROUP BY sample_id"
        "            HAVING COUNT(*) >= 2),"
        " cells AS (SELECT sample_id, value, COUNT(*) AS k FROM cur GROUP BY sample_id, value)"
        " SELECT raters.n, cells.value, cells.k, COUNT(*) FROM cells"
        " JOIN raters ON raters.sample_id = cells.sample_id"
        " GROUP BY raters.n, cells.value, cells.k"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    result = fleiss_kappa_from_cells(
        FleissCell(raters=n, category=value, count=k, items=items) for n, value, k, items in rows)
    return FleissSummary(applicable=True, items=result.items, ratings=result.ratings,
                         kappa=result.kappa)


def _model_agreement(project: Project, people: Sequence[int], span: _Span,
                     limit: int) -> tuple[dict[int, ModelAgreement], int | None]:
    """Compare each person's latest ``limit`` current labels with the served model's
    predictions of their samples; one query for the labels, one hook call for all samples."""
    latest = (
        _current(project, people, span).filter(is_correction=False)
        .annotate(rank=Window(RowNumber(), partition_by=[F("annotator_id")],
                              order_by=[F("created_at").desc(), F("pk").desc()]))
        .filter(rank__lte=limit)
        .select_related("sample")
    )
    labels = list(latest)
    samples: dict[int, Sample] = {label.sample_id: label.sample for label in labels}
    suggestions = hooks.suggestions(project=project, samples=list(samples.values()))
    if not suggestions:
        return {}, None
    tally: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    version = None
    for label in labels:
        suggestion = suggestions.get(label.sample_id)
        if suggestion is None:
            continue
        version = suggestion.model_version
        agreed = int(suggestion.label == label.value)
        counts = tally[label.annotator_id]
        counts[0] += 1
        counts[1] += agreed
        if label.sample.split == Sample.Split.TEST:
            counts[2] += 1
            counts[3] += agreed
    return {person: ModelAgreement(*counts) for person, counts in tally.items()}, version


def annotator_stats(*, project: Project, user: AbstractBaseUser, window: str = DEFAULT_WINDOW,
                    now: dt.datetime | None = None,
                    model_sample_limit: int = MODEL_SAMPLE_PER_ANNOTATOR) -> AnnotatorStats:
    """Return the labeling monitor of ``project`` over ``window`` for an owner or scientist.

    Rows: every annotator of the project, and owners and scientists who labeled, skipped
    or corrected in the window. Raises KeyError for an unknown window.
    """
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    until = now or timezone.now()
    since = window_since(window, until)
    members = project_members(project=project)
    people = [user_id for user_id, _name, _role in members]
    names = {user_id: name for user_id, name, _role in members}
    span = _Span(since=since, until=until)
    counts = _label_counts(project, people, span)
    skips = _skips(project, people, span)
    model, version = _model_agreement(project, people, span, model_sample_limit)
    rows = []
    for user_id, username, role in members:
        active = user_id in counts or user_id in skips
        if not active and role != Membership.Role.ANNOTATOR:
            continue
        rows.append(AnnotatorRow(user_id=user_id, username=username, role=role,
                                 skips=skips.get(user_id, 0), model=model.get(user_id),
                                 **counts.get(user_id, {})))
    pairs = _pairs(project, people, span, names)
    return AnnotatorStats(
        window=window, since=since, until=until, rows=rows, pairs=pairs,
        fleiss=_fleiss(project, people, span), model_version=version,
        model_sample_limit=model_sample_limit,
    )
