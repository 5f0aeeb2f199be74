"""The client: one object per service URL and token."""
from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd
import requests

from annotation_client import frames
from annotation_client.errors import ApiError

Progress = Callable[[dict], None]


def _print_progress(job: dict) -> None:
    total = job.get("rows_total") or 0
    done = job.get("rows_done") or 0
    share = f" ({done / total:.0%})" if total else ""
    end = "\n" if job.get("status") in ("done", "failed") else ""
    print(f"\rimport {job['id']}: {job['status']} {job.get('phase') or ''} {done:,}"
          f"{f'/{total:,}' if total else ''} rows{share}   ", end=end, file=sys.stderr,
          flush=True)


class Client:
    """A client of one annotation service, acting with one token.

    Parameters
    ----------
    url : str
        The service's address, e.g. ``"http://127.0.0.1:8000"``.
    token : str
        An API key. A *project token* (``manage.py create_token`` or the tokens page) acts
        by its scopes: ``predict``, ``feedback``, ``admin`` (imports, label exports, promote,
        model export), ``monitor``. A *personal token* (``create_user --token``) acts as its
        user: ``next`` and ``label``, and imports and exports for owners and scientists.
        A call the token may not make raises :class:`ApiError` (403); use
        :meth:`with_token` for another token on the same service.
    timeout : float
        Seconds to wait for each answer.
    batch_size : int
        Most instances per predict request (the server's limit is 1,000 by default).

    Every method raises :class:`ApiError` with the API's ``status``, ``code`` and message
    when the service refuses a request.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 60.0, batch_size: int = 1000,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.batch_size = batch_size
        self._token = token
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def __repr__(self) -> str:
        return f"Client({self.url!r}, token='{self._token[:6]}…')"

    def with_token(self, token: str) -> Client:
        """A client of the same service acting with ``token``."""
        return Client(self.url, token, timeout=self.timeout, batch_size=self.batch_size)

    # -- HTTP ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, f"{self.url}/api/v1/{path}",
                                        timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- projects --------------------------------------------------------------------------

    def projects(self) -> pd.DataFrame:
        """The projects this token reaches: slug, name, kind, labels, columns, image size,
        batch size and served version, one row each."""
        return pd.DataFrame(self._json("GET", "projects"),
                            columns=["slug", "name", "kind", "labels", "columns", "image_size",
                                     "batch_size", "served_version"])

    def project(self, slug: str) -> dict:
        """One project's kind, labels, columns, image size, batch size and served version."""
        return self._json("GET", f"projects/{slug}")

    # -- imports ---------------------------------------------------------------------------

    def import_samples(self, slug: str, data: str | Path | IO[bytes] | pd.DataFrame, *,
                       filename: str | None = None, text_column: str | None = None,
                       id_column: str | None = None, label_column: str | None = None,
                       labels_from_folders: bool = False, wait: bool = True,
                       progress: bool | Progress = True, poll_seconds: float = 0.5) -> dict:
        """Import a file (CSV, JSONL or a zip of images) or a DataFrame; return the import job.

        A DataFrame is sent as JSONL (its columns: ``text`` or the table's columns,
        optionally ``external_id`` and ``label``). Large files are imported by a worker:
        with ``wait`` the call follows the job until it is done, showing ``progress`` (a
        line on stderr, or your function of the job). A refused file raises
        :class:`ApiError` (``invalid_import``) whose ``detail`` is the job with its report.
        """
        if isinstance(data, pd.DataFrame):
            body = data.to_json(orient="records", lines=True, force_ascii=False)
            stream: IO[bytes] = io.BytesIO(body.encode())
            filename = filename or "frame.jsonl"
        elif isinstance(data, (str, Path)):
            stream = open(data, "rb")
            filename = filename or Path(data).name
        else:
            stream = data
            filename = filename or Path(getattr(data, "name", "upload.csv")).name
        options = {"text_column": text_column, "id_column": id_column,
                   "label_column": label_column}
        form = {k: v for k, v in options.items() if v is not None}
        if labels_from_folders:
            form["labels_from_folders"] = "true"
        try:
            job = self._json("POST", f"projects/{slug}/samples", data=form,
                             files={"file": (filename, stream)})
        finally:
            if isinstance(data, (str, Path)):
                stream.close()
        show = _print_progress if progress is True else (progress or None)
        if show:
            show(job)
        while wait and job["status"] in ("queued", "running"):
            time.sleep(poll_seconds)
            job = self.import_job(slug, job["id"])
            if show:
                show(job)
        if job["status"] == "failed":
            raise ApiError(400, "invalid_import", job["report"].get("message", "import failed"),
                           job)
        return job

    def import_job(self, slug: str, job_id: int) -> dict:
        """An import's status, progress and report."""
        return self._json("GET", f"projects/{slug}/imports/{job_id}")

    # -- labeling --------------------------------------------------------------------------

    def next(self, slug: str) -> dict | None:
        """Lease the next sample to label (a personal token), or None when none is left."""
        return self._json("GET", f"projects/{slug}/next")["sample"]

    def label(self, slug: str, sample: int, value: str, *, duration_ms: int | None = None,
              suggested_version: int | None = None) -> dict:
        """Label a sample the queue gave you; return the recorded label."""
        body: dict[str, Any] = {"sample": sample, "value": value}
        if duration_ms is not None:
            body["duration_ms"] = duration_ms
        if suggested_version is not None:
            body["suggested_version"] = suggested_version
        return self._json("POST", f"projects/{slug}/labels", json=body)

    # -- predictions and feedback ----------------------------------------------------------

    def predict(self, slug: str, data: frames.PredictInput, *, version: int | None = None,
                batch_size: int | None = None) -> pd.DataFrame:
        """Predict every instance of ``data``; one row per instance, in order.

        ``data``: a DataFrame (``text``; the table's columns; or ``image`` holding image
        bytes or base64), a Series or list of texts, a list of image bytes, or a list of
        instance dicts. Sent in requests of ``batch_size`` instances (a batch the server
        finds too large is split in two and sent again). Columns of the answer: ``id``
        (quote it in :meth:`feedback`), ``label``, ``confidence``, ``model_version`` and
        ``proba_<label>`` per label; a DataFrame's index is kept.
        """
        instances = frames.instances(data)
        size = max(1, batch_size or self.batch_size)
        params = {"version": version} if version is not None else None
        answers = []
        start = 0
        while start < len(instances):
            batch = instances[start:start + size]
            try:
                answers.append(self._json("POST", f"projects/{slug}/predict", params=params,
                                          json={"instances": batch}))
            except ApiError as exc:
                if exc.code != "too_large" or len(batch) == 1:
                    raise
                size = max(1, len(batch) // 2)
                continue
            start += len(batch)
        index = data.index if isinstance(data, (pd.DataFrame, pd.Series)) else None
        return frames.predictions_frame(answers, index)

    def feedback(self, slug: str, label: str, *, prediction_id: str | None = None,
                 instance: dict | None = None) -> dict:
        """Tell the service the true label of a prediction (by its ``id``) or of an instance;
        it becomes a labeled sample for the next model."""
        body: dict[str, Any] = {"label": label}
        if prediction_id is not None:
            body["prediction_id"] = str(prediction_id)
        if instance is not None:
            body["instance"] = frames.instances([instance])[0]
        return self._json("POST", f"projects/{slug}/feedback", json=body)

    # -- model versions --------------------------------------------------------------------

    def models(self, slug: str) -> pd.DataFrame:
        """Every model version, newest first: number, status, accuracy, macro-F1, labels
        trained on, served or not, created at."""
        frame = pd.DataFrame(self._json("GET", f"projects/{slug}/models"),
                             columns=["number", "status", "accuracy", "macro_f1",
                                      "trained_on_label_count", "is_served", "created_at"])
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    def model(self, slug: str, number: int) -> dict:
        """One version: metrics (per class, confusion matrix), labels, timings, errors."""
        return self._json("GET", f"projects/{slug}/models/{number}")

    def promote(self, slug: str, number: int, *, note: str | None = None) -> dict:
        """Serve version ``number`` (roll back or forward); an ``admin`` token."""
        body = {"note": note} if note is not None else {}
        return self._json("POST", f"projects/{slug}/models/{number}/promote", json=body)

    def export_model(self, slug: str, number: int, *,
                     format: Literal["mlflow", "onnx"] = "mlflow",
                     path: str | Path | None = None) -> Path | bytes:
        """Download a version as an MLflow model (a zip) or an ONNX file.

        With ``path`` the file is written there and its path returned, else its bytes.
        Unzip an MLflow export and load it with ``mlflow.pyfunc.load_model``.
        """
        content = self._request("GET", f"projects/{slug}/models/{number}/export",
                                params={"format": format}).content
        if path is None:
            return content
        Path(path).write_bytes(content)
        return Path(path)

    # -- monitoring and labels -------------------------------------------------------------

    def monitoring(self, slug: str, *, window: Literal["1h", "24h", "7d", "30d"] = "24h",
                   version: int | None = None) -> frames.Monitoring:
        """The predict API's traffic, errors, latency, confidence and classes over a window."""
        params: dict[str, Any] = {"window": window}
        if version is not None:
            params["version"] = version
        return frames.monitoring(self._json("GET", f"projects/{slug}/monitoring", params=params))

    def labels(self, slug: str, *, history: bool = False) -> pd.DataFrame:
        """The project's labels: one row per labeled sample, or with ``history`` every label
        ever given (superseded ones too)."""
        response = self._request("GET", f"projects/{slug}/export.jsonl",
                                 params={"history": "1"} if history else None)
        rows = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        frame = pd.DataFrame(rows)
        for column in ("labeled_at", "created_at", "superseded_at"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame


def _error(response: requests.Response) -> ApiError:
    retry = response.headers.get("Retry-After")
    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body and "error" in body:
        return ApiError(response.status_code, body["code"], body["error"], body.get("detail"),
                        retry_after)
    text = response.text.strip()[:200] or response.reason
    return ApiError(response.status_code, f"http_{response.status_code}", text, None,
                    retry_after)
