"""The scikit-learn featurizers a project's artifact holds for the pretrained options.

Each splits into the costly part, ``embed`` (an onnxruntime run, whose rows the services
cache per sample), and the cheap fitted part, ``transform_embeddings``. ``transform`` is
both, for requests and exports. Pickled with a model they carry only numbers and the
digest of the files they were fitted with; the ONNX session is opened on first use on
whichever machine loads them, after the files' sha256 check, and a machine whose files
differ from the fit's refuses them (409 ``featurizer_missing``) instead of drifting.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from learning.pretrained import embedding_cache, files, runtime


class _Pretrained(TransformerMixin, BaseEstimator):
    name = ""

    def embed(self, X) -> np.ndarray:
        """Return the raw embeddings of model input ``X`` (pixel rows or texts)."""
        reason = files.missing_reason(self.name, verify=False)  # the sha256s: when run
        if reason:
            raise files.FeaturizerMissing(reason, detail={"featurizer": self.name})
        if hasattr(self, "files_sha_") and files.files_sha(self.name) != self.files_sha_:
            raise files.FeaturizerMissing(
                f"{files.SPECS[self.name].label}: the files on this machine are not those this "
                f"model was fitted with; run `{files.SETUP_COMMAND}` from the same pins",
                detail={"featurizer": self.name})
        prepare, run = runtime.RUNNERS[self.name]
        inputs = prepare(X)
        return embedding_cache.through(self.name, inputs, runtime.content_keys(inputs), run)

    def fit(self, X, y=None):
        return self.fit_embeddings(self.embed(X))

    def transform(self, X):
        return self.transform_embeddings(self.embed(X))

    def fit_transform(self, X, y=None, **fit_params):
        E = self.embed(X)  # once: the default would embed X again to transform it
        return self.fit_embeddings(E).transform_embeddings(E)

    def fit_embeddings(self, E: np.ndarray):
        raise NotImplementedError

    def transform_embeddings(self, E: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class CnnFeaturizer(_Pretrained):
    """EfficientNet-Lite0's block-10 features of each image (448: 112 channels on a 2 x 2
    grid, see export_cnn.py), standardized, then PCA.

    Parameters
    ----------
    pca_components : int or None, default=50
        Keep this many principal components of the standardized features; None keeps all.
    random_state : int, default=0
        Seed of the PCA solver.

    Attributes
    ----------
    scaler_ : StandardScaler
    pca_ : PCA or None
    files_sha_ : str
        Digest of the ONNX file the embeddings came from.
    """

    name = "cnn"

    def __init__(self, *, pca_components=50, random_state=0):
        self.pca_components = pca_components
        self.random_state = random_state

    def fit_embeddings(self, E):
        E = np.asarray(E, dtype=np.float32)
        self.files_sha_ = files.files_sha(self.name)
        self.scaler_ = StandardScaler().fit(E)
        self.pca_ = None
        if self.pca_components:
            n = min(int(self.pca_components), *E.shape)
            self.pca_ = PCA(n_components=n, random_state=self.random_state).fit(
                self.scaler_.transform(E))
        return self

    def transform_embeddings(self, E):
        check_is_fitted(self, "scaler_")
        scaled = self.scaler_.transform(np.asarray(E, dtype=np.float32))
        return self.pca_.transform(scaled) if self.pca_ is not None else scaled


class MiniLMFeaturizer(_Pretrained):
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2 normalisation), standardized.

    Parameters
    ----------
    scale : bool, default=True
        Standardize each of the 384 dimensions (fitted on the pool), so a linear model's
        regularization treats them alike.

    Attributes
    ----------
    scaler_ : StandardScaler or None
    files_sha_ : str
    """

    name = "minilm"

    def __init__(self, *, scale=True):
        self.scale = scale

    def fit_embeddings(self, E):
        self.files_sha_ = files.files_sha(self.name)
        self.scaler_ = StandardScaler().fit(np.asarray(E, dtype=np.float32)) if self.scale else None
        return self

    def transform_embeddings(self, E):
        check_is_fitted(self, "files_sha_")
        E = np.asarray(E, dtype=np.float32)
        return self.scaler_.transform(E) if self.scaler_ is not None else E


TRANSFORMERS = {"cnn": CnnFeaturizer, "minilm": MiniLMFeaturizer}
