"""The servers of ``bench/serving.py``: ours (granian or gunicorn), ``mlflow models serve``
in its own virtual environment, the in-process reference, and wrk driving them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.process_stats import free_port, tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_VENV = ROOT / "var" / "bench" / "mlflow-venv"
MLFLOW_PINS = ["mlflow==3.17.2", "scikit-learn==1.9.1", "numpy==2.4.6"]

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
        " serialization_format='cloudpickle', pyfunc_predict_fn='predict_proba')"
    )
    subprocess.run(
        [str(MLFLOW_VENV / "bin" / "python"), "-c", code, str(pickled), str(path)], check=True,
        capture_output=True, env=_mlflow_env(),
    )


def _mlflow_env() -> dict[str, str]:
    """MLflow's interpreter must import our featurizer classes to unpickle the pipeline."""
    return {**os.environ, "PATH": f"{MLFLOW_VENV / 'bin'}:{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT)}


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


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def start_mlflow(estimator, workdir: Path, kind: str, workers: int) -> tuple[subprocess.Popen, str]:
    model_dir = workdir / f"mlflow-{kind}"
    if not model_dir.exists():
        save_mlflow_model(estimator, model_dir)
    port = free_port()
    process = subprocess.Popen(
        [str(MLFLOW_VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "-p",
         str(port), "-h", "127.0.0.1", "--env-manager", "local", "-w", str(workers)],
        env=_mlflow_env(), start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=open(workdir / f"mlflow-{kind}-w{workers}.log", "w"),
    )
    return process, f"http://127.0.0.1:{port}/invocations"


def start_ours(args, env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    bindir = Path(sys.executable).parent
    if args.server == "granian":  # the command `make serve` runs
        command = [str(bindir / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(args.workers), "--blocking-threads",
                   str(args.threads), "--no-ws", "--log-level", "warning",
                   "config.wsgi:application"]
    else:
        command = [str(bindir / "gunicorn"), "config.wsgi", "--config", "config/gunicorn.conf.py"]
    process = subprocess.Popen(
        command, cwd=ROOT,
        env={**env, "PORT": str(port), "WEB_WORKERS": str(args.workers),
             "WEB_THREADS": str(args.threads)},
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(workdir / "ours.log", "w"),
    )
    return process, port


@dataclass
class Server:
    """One server under test: wrk posts ``bodies[rows]`` to ``url``."""

    name: str
    process: subprocess.Popen
    url: str
    auth: str | None
    bodies: dict[int, bytes] = field(default_factory=dict)

    def check(self, workdir: Path) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"{self.name} exited; see {workdir}")

    def warm(self, workdir: Path, rows: int) -> None:
        """Wait for it to answer, then load its models and caches."""
        self.check(workdir)
        wait_http(self.url.rsplit("/", 1)[0] + "/")
        run_wrk(self.url, self.bodies[rows], auth=self.auth, connections=4, duration=2,
                server_pid=self.process.pid, workdir=workdir)


class Reference:
    """The kind's project, trained in a subprocess (inside Django) that stays up to time the
    in-process calls on request (``bench/serving_kinds.py``)."""

    def __init__(self, kind: str, env: dict[str, str], row_counts: list[int],
                 workdir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.serving_kinds", kind, ",".join(map(str, row_counts))],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            stderr=open(workdir / f"reference-{kind}.log", "w"), start_new_session=True,
        )
        self.info = json.loads(self._line(lambda l: l.startswith("{")))

    def _line(self, wanted) -> str:
        for line in self.process.stdout:
            if wanted(line):
                return line
        raise SystemExit(f"the reference process ended (exit {self.process.wait()}); see its log")

    def figures(self, rows: int, repeats: int) -> dict:
        self.process.stdin.write(f"{rows} {repeats}\n")
        self.process.stdin.flush()
        return json.loads(self._line(lambda l: l.startswith("RAW "))[4:])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stop(self.process)
