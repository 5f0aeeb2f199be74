"""Serving benchmark: our predict API vs `mlflow models serve` vs the raw in-process call.

One command (from the repository root, after `make setup-dev`; needs Debian's `wrk`):

    .venv/bin/python bench/serving.py [--duration 10] [--concurrency 1,8,32] [--rows 1,100]

It trains one LogisticRegression on scikit-learn's 8x8 digits through our own pipeline
(image project, retrain service), serves it (a) with our API under the production server
configuration (`make serve`: granian, 2 workers of 2 threads; `--server gunicorn` for
`config/gunicorn.conf.py`), token auth, throttling and prediction logging on (the predict
rate limit is raised so that it counts but never refuses),
(b) with `mlflow models serve` from its own virtual environment (created on first use under
var/bench/, never part of requirements.txt) and measures (c) the raw `predict_proba` call.
wrk drives both servers with single-row and 100-row requests at each concurrency; the
figures are req/s, rows/s, p50/p95/p99 latency and the server's CPU milliseconds per
request (utime+stime of the server's process tree from /proc). Results go to
bench/results/serving.json.

Inputs: MLflow receives the 64 pixel values as a dataframe. Our API receives, per
`--input`, the same values as `{"pixels": [...]}` instances (numbers for both servers: the
like-for-like comparison) and/or base64 PNG images (`png`: what most image clients send;
the decode then dominates). Rows `ours` and `ours-png` in the output.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path: a sibling bench module named like a
# standard one (bench/queue.py) would shadow it for every library imported below.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import base64
import io
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

import numpy as np
from PIL import Image

from bench.process_stats import free_port, tree_cpu_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MLFLOW_VENV = ROOT / "var" / "bench" / "mlflow-venv"
MLFLOW_PINS = ["mlflow==3.17.2", "scikit-learn==1.9.1", "numpy==2.4.6"]
SLUG = "bench-digits"

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(auth)s
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  io.stderr:write(string.format(
    "RESULT %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean, summary.errors.status))
end
"""


def wait_http(url: str, timeout: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # the server answers, even if with 4xx
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not come up in {timeout}s")



def digits_pngs() -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    pngs = []
    for row in X:
        pixels = (row.reshape(8, 8) * (255 / 16)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return X, y, pngs


def setup_our_project(env: dict[str, str], workdir: Path) -> tuple[str, str]:
    """Migrate a fresh database, create the digits project, train, return (token, artifact)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    script = f"""
import django, json
django.setup()
from django.contrib.auth import get_user_model
from annotation.models import Label, Sample
from annotation.demo import samples_create_images
from annotation.services import project_create
from learning.services import model_version_request, model_version_train
from learning.models import ModelVersion
from serving.services import api_token_create
import importlib.util
spec = importlib.util.spec_from_file_location("bench_serving", "bench/serving.py")
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
X, y, pngs = bench.digits_pngs()
owner, _ = get_user_model().objects.get_or_create(username="bench")
project = project_create(owner=owner, slug="{SLUG}", name="Bench digits", kind="image",
                         labels=[str(d) for d in range(10)], batch_size=100000)
project.image_size = 8
project.save(update_fields=["image_size"])
samples_create_images(project=project, images=((f"d{{i}}", png) for i, png in enumerate(pngs)))
truth = {{f"d{{i}}": str(label) for i, label in enumerate(y)}}
samples = list(Sample.objects.filter(project=project))
Label.objects.bulk_create([Label(sample=s, annotator=owner, value=truth[s.external_id]) for s in samples])
Sample.objects.filter(project=project).update(status="labeled")
version = model_version_request(project=project)
model_version_train(version_id=version.pk)
version.refresh_from_db()
assert version.is_served, version.error
_, key = api_token_create(project=project, scopes=["predict"])
print(json.dumps({{"key": key, "artifact": version.artifact_path, "accuracy": version.accuracy}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"trained digits model: test accuracy {info['accuracy']:.3f}")
    return info["key"], info["artifact"]


def ensure_mlflow() -> Path:
    mlflow = MLFLOW_VENV / "bin" / "mlflow"
    if not mlflow.exists():
        print(f"installing {' '.join(MLFLOW_PINS)} into {MLFLOW_VENV} (first run only)")
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run(
            [str(MLFLOW_VENV / "bin" / "pip"), "install", "-q", *MLFLOW_PINS], check=True
        )
    return mlflow


def save_mlflow_model(estimator, path: Path) -> None:
    """Save the same fitted estimator in MLflow's format, using MLflow's own interpreter."""
    import joblib

    pickled = path.parent / "estimator.joblib"
    joblib.dump(estimator, pickled)
    code = (
        "import joblib, mlflow.sklearn, sys;"
        "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2],"
        " serialization_format='cloudpickle')"
    )
    subprocess.run(
        [str(MLFLOW_VENV / "bin" / "python"), "-c", code, str(pickled), str(path)], check=True,
        capture_output=True,
    )


def run_wrk(url: str, body: bytes, *, auth: str | None, connections: int, duration: int,
            server_pid: int, workdir: Path) -> dict:
    body_file = workdir / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    auth_line = f'wrk.headers["Authorization"] = "{auth}"' if auth else ""
    script.write_text(WRK_SCRIPT % {"auth": auth_line, "body": body_file})
    threads = 1 if connections == 1 else 2
    cpu_before = tree_cpu_seconds(server_pid)
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )
    cpu_after = tree_cpu_seconds(server_pid)
    line = next(l for l in result.stderr.splitlines() if l.startswith("RESULT"))
    requests, duration_us, errors, p50, p95, p99, mean, status_errors = map(int, line.split()[1:])
    seconds = duration_us / 1e6
    return {
        "requests": requests,
        "errors": errors,
        "req_per_s": requests / seconds,
        "p50_ms": p50 / 1000,
        "p95_ms": p95 / 1000,
        "p99_ms": p99 / 1000,
        "mean_ms": mean / 1000,
        "status_errors": status_errors,
        "server_cpu_ms_per_req": 1000 * (cpu_after - cpu_before) / max(requests, 1),
    }


def bench_raw(estimator, X: np.ndarray, pngs: list[bytes], rows: int, repeats: int = 300) -> dict:
    """Time the in-process call: decode + featurize + predict_proba + JSON, as the API does."""
    sys.path.insert(0, str(ROOT))
    from learning.features import image_vector, open_image

    encoded = [base64.b64encode(p).decode() for p in pngs[:rows]]
    times, times_proba = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        matrix = np.vstack([
            image_vector(open_image(io.BytesIO(base64.b64decode(e)), max_pixels=10**7), size=8)
            for e in encoded
        ])
        proba = estimator.predict_proba(matrix)
        json.dumps([{"label": str(int(np.argmax(p))), "probabilities": p.tolist()} for p in proba])
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        estimator.predict_proba(X[:rows] / 16.0)
        times_proba.append(time.perf_counter() - start)
    return {
        "rows": rows,
        "p50_ms_with_decode_and_json": 1000 * statistics.median(times),
        "p50_ms_predict_proba_only": 1000 * statistics.median(times_proba),
    }


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rows", default="1,100")
    parser.add_argument("--workers", type=int, default=2, help="our server's worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--input", default="pixels,png", help="our API's inputs: pixels,png")
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--out", default=str(RESULTS / "serving.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    row_counts = [int(r) for r in args.rows.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),  # production settings refuse a published key
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'db.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        # Throttling stays on (every request is counted) but must not refuse the load.
        "API_THROTTLE_PREDICT": "1000000000/min",
    }
    key, artifact = setup_our_project(env, workdir)
    import joblib

    estimator = joblib.load(workdir / "media" / "artifacts" / artifact)
    X, _y, pngs = digits_pngs()

    results: dict = {"machine": {"cores": os.cpu_count()}, "config": vars(args), "servers": {}}
    results["raw"] = [bench_raw(estimator, X, pngs, rows) for rows in row_counts]

    inputs = [i.strip() for i in args.input.split(",") if i.strip()]
    bodies_png = {
        rows: json.dumps({"instances": [{"image_base64": base64.b64encode(p).decode()}
                                        for p in pngs[:rows]]}).encode()
        for rows in row_counts
    }
    bodies_pixels = {
        rows: json.dumps({"instances": [
            {"pixels": np.rint(X[i] * (255 / 16)).astype(int).tolist()} for i in range(rows)
        ]}).encode()
        for rows in row_counts
    }
    bodies_mlflow = {
        rows: json.dumps({"dataframe_split": {"columns": [f"p{i}" for i in range(64)],
                                              "data": (X[:rows] / 16.0).tolist()}}).encode()
        for rows in row_counts
    }

    servers = []
    port = free_port()
    bindir = Path(sys.executable).parent
    if args.server == "granian":  # the command `make serve` runs
        command = [str(bindir / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(args.workers), "--blocking-threads",
                   str(args.threads), "--no-ws", "--log-level", "warning",
                   "config.wsgi:application"]
    else:
        command = [str(bindir / "gunicorn"), "config.wsgi", "--config", "config/gunicorn.conf.py"]
    ours = subprocess.Popen(
        command, cwd=ROOT,
        env={**env, "PORT": str(port), "WEB_WORKERS": str(args.workers),
             "WEB_THREADS": str(args.threads)},
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(workdir / "ours.log", "w"),
    )
    url = f"http://127.0.0.1:{port}/api/v1/projects/{SLUG}/predict"
    if "pixels" in inputs:
        servers.append(("ours", ours, url, f"Token {key}", bodies_pixels))
    if "png" in inputs:
        servers.append(("ours-png", ours, url, f"Token {key}", bodies_png))
    if not args.skip_mlflow:
        mlflow = ensure_mlflow()
        model_dir = workdir / "mlflow-model"
        save_mlflow_model(estimator, model_dir)
        mport = free_port()
        mlflow_proc = subprocess.Popen(
            [str(mlflow), "models", "serve", "-m", str(model_dir), "-p", str(mport),
             "-h", "127.0.0.1", "--env-manager", "local", "-w", str(args.mlflow_workers)],
            env={**os.environ, "PATH": f"{MLFLOW_VENV / 'bin'}:{os.environ['PATH']}"},
            start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=open(workdir / "mlflow.log", "w"),
        )
        servers.append(("mlflow", mlflow_proc, f"http://127.0.0.1:{mport}/invocations", None,
                        bodies_mlflow))
    try:
        for name, process, url, auth, bodies in servers:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited; see {workdir}")
            wait_http(url.rsplit("/", 1)[0] + "/")
            run_wrk(url, bodies[row_counts[0]], auth=auth, connections=4, duration=2,
                    server_pid=process.pid, workdir=workdir)  # warm-up: load models, JIT caches
            runs = []
            for rows in row_counts:
                for connections in concurrencies:
                    figures = run_wrk(url, bodies[rows], auth=auth, connections=connections,
                                      duration=args.duration, server_pid=process.pid,
                                      workdir=workdir)
                    figures.update(rows=rows, concurrency=connections,
                                   rows_per_s=figures["req_per_s"] * rows)
                    runs.append(figures)
                    print(f"{name:7s} rows={rows:<4d} c={connections:<3d} "
                          f"{figures['req_per_s']:8.0f} req/s {figures['rows_per_s']:9.0f} rows/s "
                          f"p50 {figures['p50_ms']:6.2f} p95 {figures['p95_ms']:6.2f} "
                          f"p99 {figures['p99_ms']:6.2f} ms  cpu {figures['server_cpu_ms_per_req']:.2f} "
                          f"ms/req  errors {figures['errors']}", flush=True)
            results["servers"][name] = runs
    finally:
        for _name, process, *_rest in servers:
            stop(process)

    for raw in results["raw"]:
        print(f"raw     rows={raw['rows']:<4d} p50 {raw['p50_ms_with_decode_and_json']:.3f} ms "
              f"(predict_proba alone {raw['p50_ms_predict_proba_only']:.3f} ms)")
    ours_name = "ours" if "ours" in results["servers"] else "ours-png"
    if "mlflow" in results["servers"]:
        ratios = {}
        for ours_run in results["servers"][ours_name]:
            theirs = next(r for r in results["servers"]["mlflow"]
                          if r["rows"] == ours_run["rows"]
                          and r["concurrency"] == ours_run["concurrency"])
            ratios[f"rows{ours_run['rows']}_c{ours_run['concurrency']}"] = (
                ours_run["rows_per_s"] / theirs["rows_per_s"] if theirs["rows_per_s"] else None
            )
        results["ratio_ours_over_mlflow_rows_per_s"] = ratios
        print(f"{ours_name} / mlflow (rows/s):", {k: round(v, 2) for k, v in ratios.items() if v})
    RESULTS.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
