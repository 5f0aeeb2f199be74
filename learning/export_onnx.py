"""Convert a version's whole pipeline (featurizer and classifier) to ONNX with skl2onnx.

What converts, and what cannot (each refusal is a ``NotExportable`` naming the reason):

- **image**: the classifier on pixel rows. Input ``pixels``, float32 ``[n, image_size²]``:
  the grayscale pixels divided by 255, as the predict API's ``pixels`` instances (decoding
  a PNG or JPEG is not an ONNX operator, so it stays outside the graph).
- **tabular**: the imputers, scaler and one-hot encoder, then the classifier (not when a
  column had more categories than ``max_categories``: skl2onnx has no "infrequent" column). One input
  per column, shape ``[n, 1]``: numeric columns float32 (NaN when missing), categorical
  ones strings (``""`` when missing).
- **text**: refused. The featurizer is TF-IDF over word *and* character n-grams within
  word boundaries (``analyzer="char_wb"``), which skl2onnx 1.20 does not convert.
- classifiers: logistic regression, random forest and the calibrated linear SVM convert;
  the SVM's softmax fallback (a class with a single label when it was fitted) and
  histogram gradient boosting (skl2onnx 1.20 fails on scikit-learn 1.9's trees) do not.

Outputs: ``label`` (string) and ``probabilities`` (float32 ``[n, classes]``, in the order
of the ``classes`` metadata entry). The model's metadata also says how to build the inputs.
"""
from __future__ import annotations

import copy
import json

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline

from core.errors import DomainError
from learning import estimators, features

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}


class NotExportable(DomainError):
    """This version's configuration cannot be written in the asked format."""

    code = "not_exportable"
    status = 409


def _refuse(reason: str, message: str) -> NotExportable:
    return NotExportable(f"cannot export to ONNX: {message}", detail={"reason": reason})


def _classifier_steps(pipeline: Pipeline) -> list[tuple[str, BaseEstimator]]:
    steps = []
    for name, step in pipeline.steps:
        if name == "features":
            continue
        if isinstance(step, estimators.CalibratedLinearSVC):
            if not isinstance(step.model_, CalibratedClassifierCV):
                raise _refuse("uncalibrated_svm", "the linear SVM was fitted with a class of a "
                              "single label, so its probabilities are a softmax of its "
                              "decision values, which has no skl2onnx converter")
            step = step.model_
        steps.append((name, step))
    return steps


def _tabular_transformer(featurizer: features.TabularFeaturizer):
    """The featurizer's fitted ColumnTransformer, its string imputer reading ``""`` as
    missing (ONNX string tensors hold no NaN; skl2onnx converts only string markers) and
    its encoder ignoring unknown categories (all zeros, what ``infrequent_if_exist`` does
    when no category was rare, and the only unknown handling skl2onnx converts)."""
    transformer = copy.deepcopy(featurizer.transformer_)
    for name, step, columns in transformer.transformers_:
        if name != "cat" or not isinstance(step, Pipeline):
            continue
        step.named_steps["impute"].missing_values = ""
        encoder = step.named_steps["onehot"]
        rare = [c for c, infrequent in zip(columns, encoder.infrequent_categories_)
                if infrequent is not None]
        if rare:
            raise _refuse("infrequent_categories", f"column(s) {rare} have more than "
                          f"{encoder.max_categories} categories, so the rare ones share one "
                          "'infrequent' column, which skl2onnx 1.20 does not convert")
        encoder.handle_unknown = "ignore"
    return transformer


def onnx_bytes(pipeline: Pipeline, *, kind: str, classes, image_size: int = 0,
               metadata: dict | None = None) -> bytes:
    """Return the serialized ONNX model of ``pipeline`` (a version's artifact)."""
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    except ImportError:
        raise _refuse("skl2onnx_missing", "this server lacks skl2onnx; install "
                      "requirements-onnx.txt") from None
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline([("clf", pipeline)])
    featurizer = dict(pipeline.steps).get("features")
    inputs_doc: dict
    if kind == "text" or isinstance(featurizer, features.TextFeaturizer):
        raise _refuse("text_featurizer", "text features are TF-IDF over character n-grams "
                      "within word boundaries (analyzer='char_wb'), which skl2onnx 1.20 cannot "
                      "convert; use the mlflow format")
    steps = _classifier_steps(pipeline)
    if isinstance(featurizer, features.TabularFeaturizer):
        steps.insert(0, ("features", _tabular_transformer(featurizer)))
        initial = ([(c, FloatTensorType([None, 1])) for c in featurizer.numeric_columns_]
                   + [(c, StringTensorType([None, 1])) for c in featurizer.categorical_columns_])
        inputs_doc = {"numeric": featurizer.numeric_columns_,
                      "categorical": featurizer.categorical_columns_,
                      "missing": "NaN for numbers, '' for strings", "shape": "[n, 1] each"}
    elif featurizer is None and kind == "image":
        initial = [("pixels", FloatTensorType([None, image_size * image_size]))]
        inputs_doc = {"pixels": f"float32 [n, {image_size * image_size}]: the {image_size}x"
                      f"{image_size} grayscale pixels / 255, row by row"}
    else:
        raise _refuse("featurizer", f"no ONNX conversion for a {type(featurizer).__name__}")
    model = Pipeline(steps)
    try:
        onx = convert_sklearn(model, initial_types=initial, target_opset=TARGET_OPSET,
                              options={id(steps[-1][1]): {"zipmap": False}})
    except Exception as exc:  # skl2onnx raises many kinds; each means "cannot convert"
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise _refuse("converter", f"skl2onnx cannot convert "
                      f"{type(steps[-1][1]).__name__}: {type(exc).__name__} {first_line}"
                      ) from exc
    entries = {"classes": json.dumps([str(c) for c in classes]), "kind": kind,
               "inputs": json.dumps(inputs_doc)}
    entries.update({k: str(v) for k, v in (metadata or {}).items()})
    for key, value in entries.items():
        prop = onx.metadata_props.add()
        prop.key, prop.value = key, value
    return onx.SerializeToString()
