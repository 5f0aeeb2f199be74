"""A virtual environment with mlflow-skinny and an export's pinned requirements, built once.

It lives in a per-user cache outside the checkout (``TEST_VENV_CACHE``, by default
``~/.cache/annotation-service/venvs``), named by the hash of the requirements, so it is
reused across runs and clean clones and rebuilt only when a pin changes. pip's progress is shown on the
terminal (pytest's capture is suspended while it runs). A build that fails skips the
tests locally and fails them under ``CI=true``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learning.export_mlflow import pinned_requirements
from tests.conftest import require_service

VENVS = Path(os.environ.get("TEST_VENV_CACHE")
             or Path.home() / ".cache" / "annotation-service" / "venvs")

# Run inside the venv: load each model with mlflow.pyfunc.load_model, predict its inputs.
PREDICT_SCRIPT = r"""
import base64, json, sys
import mlflow, mlflow.pyfunc, pandas as pd
jobs = json.load(open(sys.argv[1]))
out = {"mlflow_version": mlflow.__version__, "results": {}}
for name, job in jobs.items():
    model = mlflow.pyfunc.load_model(job["model"])
    frame = pd.DataFrame(job["rows"])
    if "image" in frame:
        frame["image"] = [base64.b64decode(v) for v in frame["image"]]
    for column, kind in job.get("dtypes", {}).items():
        frame[column] = frame[column].astype(kind)
    result = model.predict(frame)
    out["results"][name] = {"frame": result.to_dict(orient="list"),
                            "signature": model.metadata.get_input_schema().input_names()}
json.dump(out, open(sys.argv[2], "w"))
"""


def _capture_suspended(config):
    capture = config.pluginmanager.getplugin("capturemanager")
    return capture.global_and_fixture_disabled() if capture else _Nothing()


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def mlflow_venv(config) -> Path:
    """Return the venv's python, building the venv first if needed."""
    requirements = pinned_requirements()
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    venv = VENVS / f"mlflow-skinny-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    VENVS.mkdir(parents=True, exist_ok=True)
    # One build at a time: the suite's parallel workers (pytest-xdist) may both need it.
    with open(VENVS / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            _build(config, venv, python, requirements)
    return python


def _build(config, venv: Path, python: Path, requirements: list[str]) -> None:
    with _capture_suspended(config):
        print(f"\nbuilding {venv} once: {' '.join(requirements)}", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                            "--progress-bar", "on", *requirements], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            require_service("the mlflow-skinny venv", f"cannot build {venv}: {exc}")
    (venv / ".complete").write_text("\n".join(requirements) + "\n")


def mlflow_predict(python: Path, jobs: dict, workdir: Path) -> dict:
    """Run ``PREDICT_SCRIPT`` in the venv over ``jobs`` ({name: {model, rows}})."""
    jobs_path, out_path = workdir / "jobs.json", workdir / "out.json"
    jobs_path.write_text(json.dumps(jobs))
    run = subprocess.run([str(python), "-c", PREDICT_SCRIPT, str(jobs_path), str(out_path)],
                         capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        pytest.fail(f"mlflow predict failed:\n{run.stderr[-4000:]}")
    return json.loads(out_path.read_text())
