"""Featurizers turn images, texts and table rows into matrices, and refuse bad input clearly."""
import io

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from PIL import Image

from learning import features

TEXTS = ["the match ended with a late goal", "new phone chip and battery", "",
         None, "bake the bread in a hot oven", "goal! what a match"]


@pytest.mark.parametrize("hashing", [False, True])
def test_text_featurizer_gives_sparse_rows_and_zero_row_for_empty_text(hashing):
    featurizer = features.TextFeaturizer(hashing=hashing, n_hash_features=2**12)
    X = featurizer.fit_transform(TEXTS)
    assert sp.issparse(X) and X.shape[0] == len(TEXTS)
    assert X[2].nnz == 0 and X[3].nnz == 0
    assert X[0].nnz > 0
    similarity = (X @ X.T).toarray()
    assert similarity[0, 5] > similarity[0, 1]  # shares "match" and "goal"


def test_text_featurizer_uses_word_and_char_ngrams():
    featurizer = features.TextFeaturizer().fit(TEXTS)
    word, char = (v for _n, v in featurizer.union_.transformer_list)
    assert "late goal" in word.vocabulary_ and " go" in char.vocabulary_


def test_text_featurizer_refuses_only_empty_texts_and_a_bare_string():
    with pytest.raises(features.FeatureError, match="empty"):
        features.TextFeaturizer().fit(["", "  ", None])
    with pytest.raises(features.FeatureError, match="single string"):
        features.TextFeaturizer().fit("just one text")


def test_tabular_featurizer_scales_numbers_one_hot_encodes_and_fills_missing():
    rows = [{"age": 30, "city": "Oslo", "score": 1.5},
            {"age": 40, "city": "Rome"},                      # score missing from this row
            {"age": None, "city": None, "score": 2.5},
            {"age": "50", "city": "Oslo", "score": 3.5}]     # a number given as a string
    featurizer = features.TabularFeaturizer()
    X = featurizer.fit_transform(rows)
    assert featurizer.numeric_columns_ == ["age", "score"]
    assert featurizer.categorical_columns_ == ["city"]
    assert X.shape[0] == 4 and np.isfinite(X).all()
    np.testing.assert_allclose(X[:, :2].mean(axis=0), 0, atol=1e-12)  # scaled numbers
    new = featurizer.transform([{"city": "Paris"}, {"age": 35, "extra": "ignored"}])
    assert new.shape == (2, X.shape[1]) and np.isfinite(new).all()
    assert new[0, 2:].sum() == 0  # an unseen category encodes as all zeros


def test_tabular_featurizer_accepts_data_frames_and_refuses_non_rows():
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan], "kind": ["a", "b", "a"]})
    assert features.TabularFeaturizer().fit_transform(frame).shape == (3, 3)
    with pytest.raises(features.FeatureError, match="row 1"):
        features.TabularFeaturizer().fit([{"x": 1}, [1, 2]])
    with pytest.raises(features.FeatureError, match="no feature columns"):
        features.TabularFeaturizer().fit([{}, {}])


def _png(mode: str, size: tuple[int, int]) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def test_image_matrix_handles_mixed_sizes_and_modes():
    streams = [_png("L", (10, 10)), _png("RGBA", (30, 12)), _png("P", (5, 40)), _png("RGB", (8, 8))]
    X = features.image_matrix(streams, size=8, max_pixels=10_000)
    assert X.shape == (4, 64) and X.min() >= 0 and X.max() <= 1
    rgb = features.image_matrix([_png("L", (9, 9))], size=8, max_pixels=10_000, mode="RGB")
    assert rgb.shape == (1, 192)


def test_image_matrix_refuses_non_images():
    with pytest.raises(features.FeatureError, match="not a decodable image"):
        features.image_matrix([io.BytesIO(b"not a png")], size=8, max_pixels=10_000)


def test_image_featurizer_scales_pixels_and_projects_with_pca():
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 64))
    featurizer = features.ImageFeaturizer().fit(pixels)
    assert featurizer.transform(pixels).max() <= 1.0
    dark = np.ones((2, 64))  # nearly black in 0-255, must not read as white
    assert featurizer.transform(dark).max() == pytest.approx(1 / 255)
    assert features.ImageFeaturizer(pca_components=5).fit_transform(pixels).shape == (40, 5)


def test_build_featurizer_refuses_unknown_kind():
    assert isinstance(features.build_featurizer("text"), features.TextFeaturizer)
    with pytest.raises(features.FeatureError, match="unknown data kind"):
        features.build_featurizer("audio")
