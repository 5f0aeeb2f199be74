"""The numeric feature cache: filled by binary COPY on PostgreSQL as the slow path reads it,
merged a block at a time, and read by chunks."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.db import connection

from annotation.models import Project, Sample
from learning import feature_cache, model_input, table_copy
from learning.model_input import (
    _cache_dir,
    _numeric_table,
    feature_cache_update,
    pool_unlabeled_rows_between,
)
from tests.factories import label_given

needs_postgresql = pytest.mark.skipif(connection.vendor != "postgresql",
                                      reason="binary COPY is PostgreSQL's")

ROWS = [
    {"a": 1.5, "b": -2, "c": 0.1},
    {"a": None, "b": 3.25},  # a null and a missing key
    {"a": "2.5", "b": " 7 ", "c": 1e-300},  # numeric strings, as numpy reads them
    {"a": 123456789.123456789, "b": -0.0, "c": 4, "extra": "ignored"},
    None,
]


@pytest.fixture
def table(project):
    project.kind = Project.Kind.TABULAR
    project.columns = ["a", "b", "c"]
    project.save()
    return project


def _fill(project, rows):
    made = [Sample.objects.create(project=project, values=row) for row in rows]
    return [s.pk for s in made], feature_cache_update(project=project)


@needs_postgresql
def test_copy_fill_reads_rows_as_the_python_path_does(table, monkeypatch):
    expected = _numeric_table(table, ROWS)

    def slow_path(*_args):
        raise AssertionError("read through the ORM")

    monkeypatch.setattr(model_input, "_numeric_table", slow_path)
    ids, directory = _fill(table, ROWS)
    assert directory is not None
    cached_ids, rows = feature_cache.load(directory)
    assert cached_ids.tolist() == ids
    np.testing.assert_array_equal(rows, expected)  # NaN where missing, same bits elsewhere
    more, _ = _fill(table, [{"a": 9, "b": 8, "c": 7}])  # only the new sample is appended
    cached_ids, rows = feature_cache.load(directory)
    assert cached_ids.tolist() == ids + more and rows[-1].tolist() == [9, 8, 7]
    assert len(list(directory.glob("*.ids.npy"))) == 2


@needs_postgresql
@pytest.mark.parametrize("value", ["nan", "Infinity", "-inf"])
def test_a_non_finite_value_makes_the_table_uncacheable_as_before(table, value):
    _ids, directory = _fill(table, [*ROWS, {"a": value, "b": 1, "c": 1}])
    assert directory is None
    assert (_cache_dir(table) / "uncacheable").exists()
    assert not list(_cache_dir(table).glob("*.npy*"))  # nothing of the fill is kept


@needs_postgresql
@pytest.mark.parametrize("value, cacheable", [("abc", False), (True, True), ("1_000", True)])
def test_a_value_postgresql_cannot_cast_is_decided_by_the_python_path(
        table, monkeypatch, value, cacheable):
    copies = []
    real = table_copy.numeric_rows

    def spy(**kwargs):
        copies.append(kwargs)
        yield from real(**kwargs)

    monkeypatch.setattr(table_copy, "numeric_rows", spy)
    rows = [*ROWS, {"a": value, "b": 1, "c": 1}]
    _ids, directory = _fill(table, rows)
    assert copies, "the COPY was tried first"
    assert (directory is not None) == cacheable
    if cacheable:
        np.testing.assert_array_equal(feature_cache.load(directory)[1], _numeric_table(table, rows))
    # the failed cast left the test's transaction usable
    assert Sample.objects.filter(project=table).count() == len(rows)


@needs_postgresql
def test_copy_blocks_cover_every_row_in_order(table, monkeypatch):
    monkeypatch.setattr(table_copy, "BLOCK_ROWS", 2)
    rng = np.random.default_rng(0)
    rows = [{"a": float(x), "b": float(y), "c": None} for x, y in rng.normal(size=(7, 2))]
    ids, _directory = _fill(table, rows)
    blocks = list(table_copy.numeric_rows(project_id=table.pk, columns=["a", "b", "c"],
                                          after=0, upto=ids[-1]))
    assert len(blocks) > 1
    assert np.concatenate([b[0] for b in blocks]).tolist() == ids
    np.testing.assert_array_equal(np.vstack([b[3] for b in blocks]), _numeric_table(table, rows))
    tests = Sample.objects.filter(project=table, split=Sample.Split.TEST)
    assert np.concatenate([b[2] for b in blocks]).tolist() == [
        pk in set(tests.values_list("pk", flat=True)) for pk in ids]


def test_many_segments_merge_into_one_keeping_each_id_once(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "COMPACT_BLOCK", 3)
    directory = tmp_path / "cache"
    expected = {}
    for k in range(feature_cache.MAX_SEGMENTS + 1):
        ids = np.arange(k * 2, k * 2 + 4, dtype=np.int64)  # overlaps the next segment
        rows = np.column_stack([ids * 1.0, ids * -1.0])
        expected.update({int(i): r.tolist() for i, r in zip(ids, rows)})
        feature_cache.append(directory, ids, rows, ids % 3 == 0)
    assert len(list(directory.glob("*.ids.npy"))) == 1
    ids, rows, test = feature_cache.rows_and_test_between(directory, 0, 10**6)
    assert ids.tolist() == sorted(expected)
    assert rows.tolist() == [expected[i] for i in ids.tolist()]
    assert test.tolist() == [i % 3 == 0 for i in ids.tolist()]
    assert not list(directory.glob("*.tmp"))


def test_append_blocks_keeps_nothing_when_its_blocks_fail(tmp_path):
    def blocks():
        yield np.arange(2), np.zeros((2, 3)), np.zeros(2, dtype=bool)
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        feature_cache.append_blocks(tmp_path, 4, 3, blocks())
    assert list(tmp_path.iterdir()) == []
    block = (np.arange(3), np.ones((3, 3)), np.array([True, False, True]))
    assert feature_cache.append_blocks(tmp_path, 4, 3, iter([block])) == 3  # one deleted
    ids, rows, test = feature_cache.rows_and_test_between(tmp_path, 0, 10)
    assert ids.tolist() == [0, 1, 2] and rows.shape == (3, 3)
    assert test.tolist() == [True, False, True]


def test_a_cached_chunk_leaves_out_test_and_labeled_samples(table, annotator):
    rows = [{"a": float(i), "b": 1.0, "c": 2.0} for i in range(12)]
    ids, directory = _fill(table, rows)
    Sample.objects.filter(pk__in=ids[:3]).update(split=Sample.Split.TEST)  # before caching:
    shutil.rmtree(directory)  # the split is fixed at import, so refill with it
    feature_cache_update(project=table)
    for pk in ids[3:5]:
        label_given(sample=Sample.objects.get(pk=pk), annotator=annotator, value=table.labels[0])
    got, X = pool_unlabeled_rows_between(project=table, lo=ids[0], hi=ids[-2])
    assert got.tolist() == ids[5:-1]
    assert X[:, 0].tolist() == [float(i) for i in range(5, 11)]
    segment = next(directory.glob("*.test.npy"))
    assert np.load(segment).sum() == 3


@needs_postgresql
@pytest.mark.django_db(transaction=True)  # the second connection sees committed rows only
def test_a_large_fill_reads_its_upper_half_on_a_second_connection(monkeypatch):
    from tests.factories import ProjectFactory

    table = ProjectFactory(kind=Project.Kind.TABULAR, columns=["a", "b", "c"])
    monkeypatch.setattr(model_input, "PARALLEL_FILL_ROWS", 4)
    monkeypatch.setattr(table_copy, "BLOCK_ROWS", 3)
    seen = []
    real = table_copy.numeric_rows

    def spy(**kwargs):
        seen.append((kwargs["after"], kwargs["upto"]))
        yield from real(**kwargs)

    monkeypatch.setattr(table_copy, "numeric_rows", spy)
    rows = [{"a": float(i), "b": None if i % 4 else -1.0, "c": i * 0.5} for i in range(15)]
    ids, directory = _fill(table, rows)
    lower, upper = sorted(seen)  # the two halves start in either order
    assert lower[0] < lower[1] == upper[0] < upper[1]
    cached_ids, cached = feature_cache.load(directory)
    assert cached_ids.tolist() == ids
    np.testing.assert_array_equal(cached, _numeric_table(table, rows))
    assert not list(directory.glob("*.tmp"))
    # A value the upper half cannot cast sends the whole fill to the slow path.
    shutil.rmtree(directory)
    more = [{"a": 1, "b": 2, "c": 3}] * 5 + [{"a": "abc", "b": 1, "c": 1}]
    _fill(table, more)
    assert (directory / "uncacheable").exists()
    assert not list(directory.glob("*.npy*")) and not list(directory.glob("*.tmp"))


def test_rows_picked_by_id_are_read_a_window_at_a_time_as_plain_indexing_reads_them(
        tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "TAKE_WINDOW_BYTES", 100)  # 4 rows of 3 floats a window
    rng = np.random.default_rng(1)
    expected = {}
    for first in (0, 1000):  # two segments
        ids = np.arange(first, first + 500, 2, dtype=np.int64)
        rows = rng.normal(size=(len(ids), 3))
        expected.update({int(i): r.tolist() for i, r in zip(ids, rows)})
        feature_cache.append(tmp_path, ids, rows, ids % 7 == 0)
    wanted = rng.choice(list(expected), 60).astype(np.int64)  # unordered, some twice
    assert feature_cache.rows_of(tmp_path, wanted).tolist() == [expected[int(i)] for i in wanted]
    found, rows = feature_cache.rows_found(tmp_path, np.array([3, 498, 1002, 4], dtype=np.int64))
    assert found.tolist() == [False, True, True, True]
    assert rows[1:].tolist() == [expected[498], expected[1002], expected[4]]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's /proc")
def test_picking_spread_rows_of_a_large_cache_keeps_resident_memory_to_a_window(tmp_path):
    """Read through one map of the file, 1% of the rows of a freshly written cache made the
    whole file resident: the kernel maps cached pages around each one touched."""
    n, width = 125_000, 64  # 64 MB of rows, still in the page cache after writing
    rng = np.random.default_rng(0)
    blocks = ((np.arange(s, s + 25_000, dtype=np.int64), rng.normal(size=(25_000, width)),
               np.zeros(25_000, dtype=bool)) for s in range(0, n, 25_000))
    feature_cache.append_blocks(tmp_path, n, width, blocks)
    wanted = np.sort(rng.choice(n, n // 100, replace=False)).astype(np.int64)

    def resident_mb(field: str) -> float:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024

    before = resident_mb("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    rows = feature_cache.rows_of(tmp_path, wanted)
    assert rows.shape == (len(wanted), width)
    grew = resident_mb("VmHWM:") - before
    assert grew < 2 * feature_cache.TAKE_WINDOW_BYTES / 2**20 + 8, f"{grew:.0f} MB"


def test_a_cached_table_draws_its_random_subset_from_the_cache_without_counting(
        table, annotator):
    from django.test.utils import CaptureQueriesContext

    from learning.model_input import model_input_random_subset

    ids, _directory = _fill(table, [{"a": float(i), "b": 1.0, "c": 2.0} for i in range(40)])
    Sample.objects.filter(pk__in=ids[:5]).update(split=Sample.Split.TEST)
    shutil.rmtree(_directory)  # refilled with the test flags
    label_given(sample=Sample.objects.get(pk=ids[5]), annotator=annotator,
                value=table.labels[0])
    feature_cache_update(project=table)  # the refill (which counts what it copies) first
    with CaptureQueriesContext(connection) as queries:
        got, X = model_input_random_subset(project=table, max_rows=10)
    # The cache's own freshness check counts only rows past its last id (an index range);
    # what must be gone is a count over the whole project for the draw.
    whole = [q["sql"] for q in queries.captured_queries
             if "COUNT(" in q["sql"].upper() and '"id" >' not in q["sql"]]
    assert not whole, whole
    assert len(got) == 10 and got.tolist() == sorted(set(got.tolist()))
    assert set(got.tolist()) <= set(ids) and X["a"].tolist() == [ids.index(i) for i in got]
    again, _X = model_input_random_subset(project=table, max_rows=10)
    assert again.tolist() == got.tolist()  # the same draw while the samples are the same
    pool, _X = model_input_random_subset(project=table, max_rows=100, pool_only=True)
    assert pool.tolist() == ids[6:]  # every unlabeled pool sample: no test, no labeled one


def test_a_worker_without_the_cache_fills_its_own_before_scoring_a_chunk(
        table, annotator, monkeypatch):
    """Files in S3, each machine has a cache of its own: the one that did not train fills
    it at its first chunk, rather than reading every chunk from the database."""
    from learning.services import dispatch, model_version_request, model_version_train, scoring

    monkeypatch.setattr(dispatch, "task_group_start", lambda name, args: list(args) and None)
    ids, directory = _fill(table, [{"a": float(i % 7), "b": float(i), "c": 1.0}
                                   for i in range(30)])
    for pk, value in zip(ids[:6], table.labels * 3):
        label_given(sample=Sample.objects.get(pk=pk), annotator=annotator, value=value)
    version = model_version_request(project=table)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    lo, hi, _runs = version.score_chunks_left[0]
    shutil.rmtree(directory)  # another machine's disk
    scoring.pool_score_chunk(version_id=version.pk, scorer_id=version.pk, lo=lo, hi=hi)
    assert feature_cache.max_id(directory) == ids[-1]
    version.refresh_from_db()
    assert version.score_chunks_done == 1 and version.error == ""


@needs_postgresql
@pytest.mark.parametrize("columns", [
    ['we"ird', "Case", "case", "with space", "ünï"],  # quoted, case-sensitive field names
    ["x" * 64, "b"],  # longer than PostgreSQL's identifiers: read key by key instead
])
def test_copy_reads_any_column_name_and_non_object_rows_as_the_python_path(project, columns):
    project.kind = Project.Kind.TABULAR
    project.columns = columns
    project.save()
    rows = [{c: float(k + 10 * i) for k, c in enumerate(columns)} for i in range(3)]
    rows += [None, {columns[0]: None}]  # no object, a null: every value missing
    expected = _numeric_table(project, rows)
    assert np.isnan(expected[3:]).all()
    ids, directory = _fill(project, rows)
    assert directory is not None
    cached_ids, cached = feature_cache.load(directory)
    assert cached_ids.tolist() == ids
    np.testing.assert_array_equal(cached, expected)


def test_the_copy_expands_each_row_once_when_its_columns_can_be_fields():
    once, _ = table_copy._statement(["a", 'b"', "C"])
    by_key, keys = table_copy._statement(["a", "a"])
    assert "jsonb_to_record" in once.as_string(None) and "->>" not in once.as_string(None)
    assert "jsonb_to_record" not in by_key.as_string(None) and keys == ["a", "a"]
