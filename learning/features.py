"""Turn raw sample payloads into feature matrices; pure functions, no Django."""
from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted


class FeatureError(ValueError):
    """A payload cannot be turned into features (not an image, too large, ...)."""


def image_vector(image: Image.Image, *, size: int, mode: str = "L") -> np.ndarray:
    """Return a flat vector in [0, 1] of ``image`` resized to ``size`` x ``size``.

    ``mode`` is ``"L"`` (grayscale, one value per pixel) or ``"RGB"`` (three); any input
    mode and size is converted, so a pool of mixed images yields rows of one width.
    """
    if mode not in ("L", "RGB"):
        raise FeatureError(f"image mode must be 'L' or 'RGB', not {mode!r}")
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P"):
        # Flatten transparency onto white so a transparent background reads as paper.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    converted = image.convert(mode)
    if converted.size != (size, size):
        converted = converted.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.float32).reshape(-1) / 255.0


def open_image(stream: BinaryIO, *, max_pixels: int) -> Image.Image:
    """Open and fully decode an image, refusing non-images and decompression bombs."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(stream) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise FeatureError(f"image has {width * height} pixels, more than {max_pixels}")
            image.load()
            return image.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FeatureError(f"image too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, FeatureError):
            raise
        raise FeatureError("not a decodable image") from exc


def image_matrix(
    streams: Iterable[BinaryIO], *, size: int, max_pixels: int, mode: str = "L"
) -> np.ndarray:
    """Return one row of pixel features per image stream."""
    rows = [image_vector(open_image(s, max_pixels=max_pixels), size=size, mode=mode)
            for s in streams]
    if not rows:
        return np.empty((0, size * size * len(mode)), dtype=np.float32)
    return np.vstack(rows)


def image_array(pixels: np.ndarray, *, scale: float | None = None) -> np.ndarray:
    """Return pixel rows divided by ``scale``, one flat row per image.

    ``pixels`` is one image per row (flat, or ``(n, h, w[, c])``). Without ``scale``, values
    above 1 are taken as 0-255 and others as already in [0, 1].
    """
    X = np.asarray(pixels, dtype=np.float32)
    if X.ndim < 2:
        raise FeatureError(f"expected one image per row, got an array of shape {X.shape}")
    X = X.reshape(len(X), -1)
    if not np.isfinite(X).all():
        raise FeatureError("some pixel values are missing or infinite")
    if scale is None:
        scale = 255.0 if X.size and X.max() > 1.0 else 1.0
    return X / scale if scale != 1.0 else X


class TextFeaturizer(TransformerMixin, BaseEstimator):
    """TF-IDF on word and character n-grams, fitted on the whole pool.

    Parameters
    ----------
    hashing : bool, default=False
        Use stateless hashing vectorizers (with IDF on top) instead of vocabularies, for
        pools too large to hold a vocabulary in memory.
    word_ngrams : tuple of int, default=(1, 2)
        Range of word n-gram lengths.
    char_ngrams : tuple of int, default=(2, 4)
        Range of character n-gram lengths, taken within word boundaries.
    max_features : int or None, default=50000
        Cap on each vocabulary (ignored when hashing).
    n_hash_features : int, default=2**18
        Width of each hashed block when ``hashing`` is True.

    Attributes
    ----------
    union_ : FeatureUnion
        The fitted word and character vectorizers.
    """

    def __init__(self, *, hashing=False, word_ngrams=(1, 2), char_ngrams=(2, 4),
                 max_features=50000, n_hash_features=2**18):
        self.hashing = hashing
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.max_features = max_features
        self.n_hash_features = n_hash_features

    def _vectorizer(self, analyzer: str, ngrams: tuple[int, int]):
        if self.hashing:
            return Pipeline([
                ("hash", HashingVectorizer(analyzer=analyzer, ngram_range=ngrams,
                                           n_features=self.n_hash_features,
                                           alternate_sign=False, norm=None)),
                ("idf", TfidfTransformer(sublinear_tf=True)),
            ])
        return TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True,
                               max_features=self.max_features)

    def fit(self, X, y=None):
        texts = text_list(X)
        if not any(t.strip() for t in texts):
            raise FeatureError("every text is empty; nothing to learn features from")
        self.union_ = FeatureUnion([
            ("word", self._vectorizer("word", tuple(self.word_ngrams))),
            ("char", self._vectorizer("char_wb", tuple(self.char_ngrams))),
        ])
        try:
            self.union_.fit(texts)
        except ValueError as exc:  # e.g. only stop words or punctuation
            raise FeatureError(f"no usable words in the texts: {exc}") from exc
        return self

    def transform(self, X):
        check_is_fitted(self, "union_")
        return self.union_.transform(text_list(X)).tocsr()


def text_list(texts: Iterable) -> list[str]:
    """Return ``texts`` as strings: None and NaN become empty, other values their str()."""
    if isinstance(texts, str):
        raise FeatureError("expected a list of texts, got a single string")
    out = []
    for text in texts:
        if text is None or (isinstance(text, float) and np.isnan(text)):
            out.append("")
        else:
            out.append(str(text))
    return out


class TabularFeaturizer(TransformerMixin, BaseEstimator):
    """Scale numeric columns and one-hot encode categorical ones, filling missing values.

    A column is numeric when every present value parses as a number; anything else is
    categorical. Rows may lack columns: a missing cell counts as a missing value.

    Parameters
    ----------
    max_categories : int or None, default=50
        Most frequent categories kept per column; rarer ones share one infrequent column.

    Attributes
    ----------
    columns_ : list of str
        Feature columns seen in fit, in order.
    numeric_columns_, categorical_columns_ : list of str
        How each column was typed.
    transformer_ : ColumnTransformer
        The fitted imputers, scaler and encoder.
    """

    def __init__(self, *, max_categories=50):
        self.max_categories = max_categories

    def fit(self, X, y=None):
        frame = tabular_frame(X)
        if frame.shape[1] == 0:
            raise FeatureError("no feature columns")
        if len(frame) == 0:
            raise FeatureError("no rows")
        self.columns_ = list(frame.columns)
        numeric = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") for c in frame})
        parses = (numeric.notna() | frame.isna()).all()
        self.numeric_columns_ = [c for c in self.columns_ if parses[c] and frame[c].notna().any()]
        self.categorical_columns_ = [c for c in self.columns_ if c not in self.numeric_columns_
                                     and frame[c].notna().any()]
        numeric_pipe = Pipeline([("impute", SimpleImputer(strategy="median")),
                                 ("scale", StandardScaler())])
        categorical_pipe = Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                     max_categories=self.max_categories, sparse_output=False)),
        ])
        self.transformer_ = ColumnTransformer(
            [("num", numeric_pipe, self.numeric_columns_),
             ("cat", categorical_pipe, self.categorical_columns_)],
            sparse_threshold=0.0,
        )
        self.transformer_.fit(self._typed(frame))
        return self

    def _typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reindex(columns=self.columns_)
        out = {}
        for c in self.numeric_columns_:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype(np.float64)
        for c in self.categorical_columns_:
            col = frame[c]
            # Missing cells as NaN, which the imputer fills: a column of only None (one row
            # with the value missing) would otherwise reach the encoder as an unknown None.
            out[c] = col.astype(str).astype(object).where(col.notna(), np.nan)
        return pd.DataFrame(out, index=frame.index)

    def transform(self, X):
        check_is_fitted(self, "transformer_")
        return np.asarray(self.transformer_.transform(self._typed(tabular_frame(X))),
                          dtype=np.float64)


def tabular_frame(rows) -> pd.DataFrame:
    """Return ``rows`` (a DataFrame, a 2-D array, or dicts of column -> value) as a DataFrame."""
    if isinstance(rows, pd.DataFrame):
        return rows.reset_index(drop=True)
    if isinstance(rows, np.ndarray):
        if rows.ndim != 2:
            raise FeatureError(f"expected a 2-D table, got shape {rows.shape}")
        return pd.DataFrame(rows, columns=[f"x{i}" for i in range(rows.shape[1])])
    rows = list(rows)
    for i, row in enumerate(rows):
        if row is not None and not isinstance(row, dict):
            raise FeatureError(f"row {i} is a {type(row).__name__}, not a column -> value mapping")
    return pd.DataFrame.from_records([row or {} for row in rows])


class ImageFeaturizer(TransformerMixin, BaseEstimator):
    """Optional PCA on pixel rows in [0, 1], fitted on the whole pool.

    Parameters
    ----------
    pca_components : int or None, default=None
        Keep this many principal components; None passes pixels through.
    random_state : int, default=0
        Seed of the randomized PCA solver.

    Attributes
    ----------
    pixel_scale_ : float
        255 when the pool's pixels were 0-255, else 1.
    pca_ : PCA or None
        The fitted projection.
    """

    def __init__(self, *, pca_components=None, random_state=0):
        self.pca_components = pca_components
        self.random_state = random_state

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float32)
        # Decided once on the pool, so a dark test batch is not scaled differently.
        self.pixel_scale_ = 255.0 if X.size and X.max() > 1.0 else 1.0
        X = image_array(X, scale=self.pixel_scale_)
        self.pca_ = None
        if self.pca_components:
            n = min(self.pca_components, *X.shape)
            self.pca_ = PCA(n_components=n, random_state=self.random_state).fit(X)
        return self

    def transform(self, X):
        check_is_fitted(self, "pca_")
        X = image_array(X, scale=self.pixel_scale_)
        return self.pca_.transform(X) if self.pca_ is not None else X


FEATURIZERS = {"image": ImageFeaturizer, "text": TextFeaturizer, "tabular": TabularFeaturizer}


def build_featurizer(kind: str, **params) -> TransformerMixin:
    """Return an unfitted featurizer for a data ``kind`` (image, text or tabular)."""
    try:
        return FEATURIZERS[kind](**params)
    except KeyError:
        raise FeatureError(f"unknown data kind {kind!r}; choose from {sorted(FEATURIZERS)}")
