"""Conversions between pandas objects and the API's JSON: instances in, DataFrames out."""
from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import pandas as pd

#: What :meth:`Client.predict` takes: a DataFrame (one row per instance), a Series or list
#: of texts, a list of image bytes, or a list of ready instances (dicts).
PredictInput = Union[pd.DataFrame, pd.Series, Sequence[Any]]


def _cell(value: Any) -> Any:
    """A DataFrame cell as JSON: NaN and NA become null, numpy scalars Python ones."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (bytes, bytearray)):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def _image(value: Any) -> dict:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"image_base64": base64.b64encode(bytes(value)).decode("ascii")}
    return {"image_base64": value}


def instances(data: PredictInput) -> list[dict]:
    """Return the predict API's instances for ``data``.

    - a DataFrame: one instance per row; an ``image`` column of bytes (the image file) or
      base64 strings becomes ``image_base64``; any other columns are sent as they are
      (``text`` for text projects, the table's columns for tabular ones), NaN as null;
    - a Series or list of strings: texts; a list of bytes: image files;
    - a list of dicts: sent as they are.
    """
    if isinstance(data, pd.DataFrame):
        columns = list(data.columns)
        out = []
        for row in data.itertuples(index=False, name=None):
            instance = {}
            for column, value in zip(columns, row):
                if column == "image":
                    instance.update(_image(value))
                else:
                    instance[str(column)] = _cell(value)
            out.append(instance)
        return out
    items = data.tolist() if isinstance(data, pd.Series) else list(data)
    out = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(dict(item))
        elif isinstance(item, str):
            out.append({"text": item})
        elif isinstance(item, (bytes, bytearray, memoryview)):
            out.append(_image(item))
        else:
            raise TypeError(f"cannot predict a {type(item).__name__}: send texts, image bytes, "
                            "dicts or a DataFrame")
    return out


def predictions_frame(answers: Iterable[dict], index: pd.Index | None = None) -> pd.DataFrame:
    """One row per prediction: ``id``, ``label``, ``confidence``, ``model_version`` and a
    ``proba_<label>`` column per label, in the API's order."""
    rows = []
    for answer in answers:
        for p in answer["predictions"]:
            row = {"id": p["id"], "label": p["label"], "confidence": p["confidence"],
                   "model_version": answer["model_version"]}
            row.update({f"proba_{label}": value for label, value in p["probabilities"].items()})
            rows.append(row)
    frame = pd.DataFrame(rows)
    if index is not None and len(index) == len(frame):
        frame.index = index
    return frame


@dataclass
class Monitoring:
    """The monitoring numbers of a window, with its tables as DataFrames.

    Attributes
    ----------
    traffic : DataFrame
        One row per bucket (``t`` as UTC timestamps; ``requests``, ``rows``, ``errors``).
    classes : DataFrame
        One row per label: ``predicted`` count and ``training`` labels.
    confidence : DataFrame
        The histogram: ``low``, ``high`` (a tenth of 0..1) and ``predictions``.
    summary : dict
        The scalar numbers: window, versions, error rate, latency quantiles, mean
        confidence, live and estimated accuracy.
    raw : dict
        The API's answer as it came.
    """

    traffic: pd.DataFrame
    classes: pd.DataFrame
    confidence: pd.DataFrame
    summary: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)


def monitoring(raw: dict) -> Monitoring:
    """Split the monitoring answer into DataFrames and a summary."""
    traffic = pd.DataFrame(raw["traffic"]["series"], columns=["t", "requests", "rows", "errors"])
    traffic["t"] = pd.to_datetime(traffic["t"], utc=True)
    predicted = raw["classes"].get("predicted") or {}
    training = raw["classes"].get("training") or {}
    labels = list(dict.fromkeys([*training, *predicted]))
    classes = pd.DataFrame({"label": labels,
                            "predicted": [predicted.get(label, 0) for label in labels],
                            "training": [training.get(label, 0) for label in labels]})
    histogram = raw["confidence"]["histogram"]
    confidence = pd.DataFrame({"low": [i / len(histogram) for i in range(len(histogram))],
                               "high": [(i + 1) / len(histogram) for i in range(len(histogram))],
                               "predictions": histogram})
    summary = {
        "window": raw["window"], "from": raw["from"], "to": raw["to"],
        "version": raw["version"], "served_version": raw["served_version"],
        "requests": raw["traffic"]["requests"], "rows": raw["traffic"]["rows"],
        "error_rate": raw["errors"]["rate"], **{f"latency_{k}": v for k, v in
                                                 raw["latency_ms"].items()},
        "confidence_mean": raw["confidence"]["mean"],
        "live_accuracy": (raw.get("live_accuracy") or {}).get("accuracy"),
        "estimated_accuracy": (raw.get("estimated_accuracy") or {}).get("value"),
    }
    return Monitoring(traffic=traffic, classes=classes, confidence=confidence,
                      summary=summary, raw=raw)
