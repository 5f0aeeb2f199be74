"""What one monitoring read costs in queries, whatever the window: the rollups' parts are
read in one statement each, and a trained version's training counts are remembered."""
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from serving.monitoring_selectors import WINDOWS, monitoring_summary, training_distribution
from tests.serving.test_rollup_rebuild import logged  # noqa: F401  (a fixture)


@pytest.mark.django_db
@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_summary_takes_seven_queries_then_four(logged, window):  # noqa: F811
    cache.clear()
    with CaptureQueriesContext(connection) as first:
        cold = monitoring_summary(project=logged, window=window)
    with CaptureQueriesContext(connection) as warm:
        again = monitoring_summary(project=logged, window=window, now=cold["to"])
    # buckets and totals, classes, the version, its training counts (cold only), feedback,
    # and (cold only: the result is kept MONITORING_DRIFT_CACHE_SECONDS) the input drift's
    # reference and the window's kept inputs
    assert len(first.captured_queries) == 7
    assert len(warm.captured_queries) == 4
    assert again == cold
    assert cold["traffic"]["rows"] > 0 or window == "1h"


@pytest.mark.django_db
def test_training_counts_are_remembered_per_trained_version(served_project,
                                                            django_assert_num_queries):
    cache.clear()
    version = served_project.model_versions.get()
    counts = training_distribution(version=version)
    assert sum(counts.values()) == version.trained_on_label_count
    with django_assert_num_queries(0):
        assert training_distribution(version=version) == counts
    version.status = version.Status.TRAINING  # not trained yet: always counted afresh
    with django_assert_num_queries(1):
        training_distribution(version=version)
