"""The pretrained embeddings cache stays within EMBEDDING_CACHE_MAX_MB (no model files needed:
the computation is a stand-in that counts its rows)."""
import time

import numpy as np

from learning import feature_cache
from learning.pretrained import embedding_cache

WIDTH = 100  # 400 bytes a float32 row, 408 with its id


def _compute(runs):
    def compute(inputs):
        runs.append(len(inputs))
        return np.repeat(inputs[:, :1], WIDTH, axis=1).astype(np.float32)
    return compute


def _batch(start, n=100):
    rows = np.arange(start, start + n, dtype=np.float32)[:, None]
    return rows, rows[:, 0].astype(np.int64) + 1


def _size(root):
    return sum(p.stat().st_size for p in root.rglob("*.npy"))


def test_the_oldest_segments_are_evicted_to_stay_within_the_bound(settings, tmp_path):
    settings.LOCAL_CACHE_DIR = tmp_path
    settings.EMBEDDING_CACHE_MAX_MB = 150_000 / 2**20  # room for about three batches of 100
    runs = []
    for start in (0, 100, 200, 300, 400):
        rows, keys = _batch(start)
        out = embedding_cache.through("cnn", rows, keys, _compute(runs))
        assert np.array_equal(out[:, 0], rows[:, 0])
        time.sleep(0.01)  # distinct write times
    root = embedding_cache.cache_dir("cnn").parent
    assert runs == [100] * 5
    assert 0 < _size(root) <= 150_000
    runs.clear()
    rows, keys = _batch(400)
    embedding_cache.through("cnn", rows, keys, _compute(runs))  # the newest: still cached
    rows, keys = _batch(0)
    embedding_cache.through("cnn", rows, keys, _compute(runs))  # the oldest: evicted
    assert runs == [100]
    assert _size(root) <= 150_000


def test_a_batch_larger_than_the_bound_is_computed_and_not_kept(settings, tmp_path):
    settings.LOCAL_CACHE_DIR = tmp_path
    settings.EMBEDDING_CACHE_MAX_MB = 10_000 / 2**20
    runs = []
    rows, keys = _batch(0)
    out = embedding_cache.through("cnn", rows, keys, _compute(runs))
    assert out.shape == (100, WIDTH) and runs == [100]
    assert not list(tmp_path.rglob("*.npy"))
    settings.EMBEDDING_CACHE_MAX_MB = 0
    embedding_cache.through("cnn", rows, keys, _compute(runs))
    assert runs == [100, 100] and not list(tmp_path.rglob("*.npy"))


def test_the_embeddings_of_files_no_longer_installed_are_removed_first(settings, tmp_path):
    settings.LOCAL_CACHE_DIR = tmp_path
    root = tmp_path / "embeddings"
    stale = root / "cnn-0123456789abcdef"
    other = root / "minilm-0123456789abcdef"
    for directory in (stale, other):
        feature_cache.append(directory, np.arange(1, 4), np.ones((3, 4), dtype=np.float32))
    rows, keys = _batch(0)
    embedding_cache.through("cnn", rows, keys, _compute([]))
    assert not stale.exists()
    assert feature_cache.rows_of(other, np.arange(1, 4)) is not None  # another featurizer's
    assert feature_cache.rows_of(embedding_cache.cache_dir("cnn"), keys) is not None
