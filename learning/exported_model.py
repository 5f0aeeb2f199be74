"""The predictor inside an MLflow export: raw inputs in a DataFrame, the predict API's answer out.

No Django, and nothing of this code base needed where it is loaded: the export pickles an
``ExportedModel`` with cloudpickle *by value* (this module, ``learning.features`` and
``learning.estimators`` included), so the loading environment needs only the pinned
packages of the export's ``requirements.txt``.

Input, one row per instance, by the project's kind:

- text: a ``text`` column of strings;
- tabular: the project's columns (numbers, strings, or missing);
- image: an ``image`` column holding the encoded file's bytes (PNG, JPEG, ...) or the same
  as a base64 string; decoded to the project's ``image_size`` grayscale pixels exactly as
  the predict API decodes them.

Output: a DataFrame with ``label``, ``confidence`` and one ``proba_<label>`` column per
label, in the order the predict API lists its ``probabilities`` (the project's labels, then
any class the model knows that the project no longer has).
"""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from learning import features

# Pillow's decompression-bomb guard, as the service's default MAX_IMAGE_PIXELS.
DEFAULT_MAX_IMAGE_PIXELS = 20_000_000


def label_order(project_labels, classes) -> tuple[list[str], list[int]]:
    """Return the output labels (the project's, then classes it no longer has) and, for
    each of the model's classes, its column among them."""
    classes = [str(c) for c in classes]
    labels = list(project_labels) + [c for c in classes if c not in project_labels]
    return labels, [labels.index(c) for c in classes]


class ExportedModel:
    """A version's fitted pipeline with what it needs to take raw inputs.

    Parameters
    ----------
    pipeline : estimator
        The version's artifact: featurizer (texts, tables) and classifier.
    kind : {"image", "text", "tabular"}
    labels : list of str
        The project's labels when exported.
    columns : list of str
        Tabular projects: the feature columns, in order.
    image_size : int
        Image projects: the side of the grayscale square images are resized to.
    """

    def __init__(self, *, pipeline, kind: str, labels, columns=(), image_size: int = 0,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, metadata=None):
        self.pipeline = pipeline
        self.kind = kind
        self.labels = list(labels)
        self.columns = list(columns)
        self.image_size = int(image_size)
        self.max_image_pixels = int(max_image_pixels)
        self.metadata = dict(metadata or {})

    def model_input(self, frame: pd.DataFrame):
        """Return what the pipeline takes for the raw rows of ``frame``."""
        frame = pd.DataFrame(frame)
        if self.kind == "text":
            return features.text_list(self._column(frame, "text"))
        if self.kind == "image":
            return np.vstack([self._image_row(i, value)
                              for i, value in enumerate(self._column(frame, "image"))])
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"missing column(s) {missing}; expected {self.columns}")
        rows = frame[self.columns].astype(object).where(frame[self.columns].notna(), None)
        return features.tabular_frame(rows.to_dict("records")).reindex(columns=self.columns)

    @staticmethod
    def _column(frame: pd.DataFrame, name: str) -> list:
        if name not in frame.columns:
            raise ValueError(f"expected a {name!r} column, got {list(frame.columns)}")
        return frame[name].tolist()

    def _image_row(self, index: int, value) -> np.ndarray:
        if isinstance(value, str):
            value = base64.b64decode(value, validate=True)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"row {index}: 'image' must be the image file's bytes or base64")
        image = features.open_image(io.BytesIO(bytes(value)), max_pixels=self.max_image_pixels)
        return features.image_vector(image, size=self.image_size)

    def predict_proba(self, frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
        """Return the output labels and one row of probabilities per input row."""
        proba = np.asarray(self.pipeline.predict_proba(self.model_input(frame)))
        labels, columns = label_order(self.labels, self.pipeline.classes_)
        full = np.zeros((len(proba), len(labels)))
        full[:, columns] = proba
        return labels, full

    def predict(self, model_input, params=None) -> pd.DataFrame:
        """MLflow's pyfunc ``predict``: ``label``, ``confidence``, ``proba_<label>``."""
        labels, full = self.predict_proba(model_input)
        best = full.argmax(axis=1)
        out = pd.DataFrame({
            "label": [labels[b] for b in best],
            "confidence": full[np.arange(len(full)), best],
        })
        for j, label in enumerate(labels):
            out[f"proba_{label}"] = full[:, j]
        return out
