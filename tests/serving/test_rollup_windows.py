"""A window read as whole hours plus minute edges sums exactly what its minutes sum."""
import datetime as dt

import pytest
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from serving.models import CONFIDENCE_COLUMNS, ERROR_COLUMNS, LATENCY_COLUMNS
from serving.rollup_windows import RollupWindow
from tests.serving.test_rollup_rebuild import logged  # noqa: F401  (a fixture)

COLUMNS = ("requests", "rows", *ERROR_COLUMNS, *LATENCY_COLUMNS, *CONFIDENCE_COLUMNS,
           "confidence_sum")


@pytest.mark.django_db
@pytest.mark.parametrize("version", [None, 1, 2])
def test_hours_and_edges_sum_what_the_minutes_sum(logged, version):  # noqa: F811
    now = timezone.now().replace(second=0, microsecond=0)
    for first, end in ((now - dt.timedelta(hours=5, minutes=13), now),
                       (now - dt.timedelta(hours=3), now - dt.timedelta(minutes=61, seconds=5)),
                       (now - dt.timedelta(hours=4, minutes=1), now - dt.timedelta(hours=3, minutes=59)),
                       (now - dt.timedelta(days=30), now + dt.timedelta(seconds=59))):
        split = RollupWindow(project=logged, version=version, first=first, end=end)
        minutes = RollupWindow(project=logged, version=version, first=first, end=end, hours=False)
        assert split.classes() == minutes.classes()
        for trunc in (TruncHour, TruncDay):
            series, totals = split.buckets(trunc, COLUMNS)
            expected_series, expected_totals = minutes.buckets(trunc, COLUMNS)
            assert totals == pytest.approx(expected_totals)
            assert [row["bucket"] for row in series] == [row["bucket"] for row in expected_series]
            strip = [{k: v for k, v in row.items() if k != "bucket"} for row in series]
            assert strip == [pytest.approx({k: v for k, v in row.items() if k != "bucket"})
                             for row in expected_series]
    whole = RollupWindow(project=logged, version=version, first=now - dt.timedelta(days=1), end=now)
    assert whole.buckets(TruncDay, ("rows",))[1]["rows"] > 0
    assert whole._split() is not None
