"""Write a version as an MLflow model directory, zipped, without importing MLflow.

An MLflow model is plain files: ``MLmodel`` (YAML: flavors, signature), the environment
(``requirements.txt``, ``python_env.yaml``, ``conda.yaml``, pinned to the versions this
service runs) and the model's own data. Ours uses the ``python_function`` flavor with a
*loader module* (``code/annotation_model_loader.py``, a few lines) that unpickles an
``ExportedModel`` (``learning/exported_model.py``) written with cloudpickle *by value*: the
featurizers and estimators of this code base travel inside ``model.pkl``, so
``mlflow.pyfunc.load_model`` needs no code of ours, only the pinned packages.
"""
from __future__ import annotations

import io
import json
import platform
import threading
import uuid
import zipfile
from datetime import datetime, timezone
from importlib import metadata

import cloudpickle
import yaml

from learning import estimators, exported_model, features
from learning.exported_model import ExportedModel

LOADER_MODULE = "annotation_model_loader"
LOADER_SOURCE = '''"""Load the model exported by the annotation service (MLflow python_function flavor)."""
import cloudpickle


def _load_pyfunc(data_path):
    with open(data_path, "rb") as stream:
        return cloudpickle.load(stream)
'''
# What MLflow's loader needs besides what the model itself imports.
MLFLOW_REQUIREMENT = "mlflow-skinny==3.17.2"
PACKAGES = ("cloudpickle", "numpy", "pandas", "scipy", "scikit-learn", "joblib",
            "threadpoolctl", "pillow")
_by_value_lock = threading.Lock()


def pinned_requirements() -> list[str]:
    """The packages the exported model imports, at the versions this service runs."""
    return [MLFLOW_REQUIREMENT] + [f"{name}=={metadata.version(name)}" for name in PACKAGES]


def signature(model: ExportedModel, numeric_columns=()) -> dict:
    """The MLflow signature: one input column per raw field, and the output columns."""
    if model.kind == "text":
        inputs = [{"type": "string", "name": "text", "required": True}]
    elif model.kind == "image":
        inputs = [{"type": "binary", "name": "image", "required": True}]
    else:
        inputs = [{"type": "double" if c in numeric_columns else "string", "name": c,
                   "required": True} for c in model.columns]
    labels, _columns = exported_model.label_order(model.labels, model.pipeline.classes_)
    outputs = ([{"type": "string", "name": "label", "required": True},
                {"type": "double", "name": "confidence", "required": True}]
               + [{"type": "double", "name": f"proba_{label}", "required": True}
                  for label in labels])
    return {"inputs": json.dumps(inputs), "outputs": json.dumps(outputs), "params": None}


def _pickled_by_value(model: ExportedModel) -> bytes:
    modules = (exported_model, features, estimators)
    with _by_value_lock:  # registration is global to cloudpickle
        for module in modules:
            cloudpickle.register_pickle_by_value(module)
        try:
            return cloudpickle.dumps(model)
        finally:
            for module in modules:
                cloudpickle.unregister_pickle_by_value(module)


def mlflow_zip(model: ExportedModel, *, name: str, numeric_columns=()) -> bytes:
    """Return the zip of an MLflow model directory ``name/`` holding ``model``."""
    python = platform.python_version()
    requirements = pinned_requirements()
    mlmodel = {
        "artifact_path": name,
        "flavors": {"python_function": {
            "loader_module": LOADER_MODULE,
            "code": "code",
            "data": "model.pkl",
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "python_version": python,
        }},
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "signature": signature(model, numeric_columns),
        "metadata": model.metadata,
    }
    conda = {"name": "mlflow-env", "channels": ["conda-forge"],
             "dependencies": [f"python={python}", "pip", {"pip": requirements}]}
    python_env = {"python": python, "build_dependencies": ["pip", "setuptools", "wheel"],
                  "dependencies": ["-r requirements.txt"]}
    files = {
        "MLmodel": yaml.safe_dump(mlmodel, sort_keys=False),
        "requirements.txt": "\n".join(requirements) + "\n",
        "conda.yaml": yaml.safe_dump(conda, sort_keys=False),
        "python_env.yaml": yaml.safe_dump(python_env, sort_keys=False),
        f"code/{LOADER_MODULE}.py": LOADER_SOURCE,
        "model.pkl": _pickled_by_value(model),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            archive.writestr(f"{name}/{path}", content)
    return buffer.getvalue()
