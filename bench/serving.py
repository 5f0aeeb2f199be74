"""Serving benchmark per project kind: our predict API vs `mlflow models serve` vs in-process.

One command (from the repository root, after `make setup-dev`; needs Debian's `wrk`):

    .venv/bin/python bench/serving.py [--kinds image,tabular,text] [--quick]
        [--rounds 4] [--duration 3] [--concurrency 1,8,32] [--rows 1,100]

For each kind (image: 8x8 digits as pixels; tabular: the digits as 64 columns with missing
cells plus two categorical columns with missing values; text: TF-IDF on words and
character n-grams + logistic regression; see bench/serving_kinds.py) it trains one model
through our own retrain service and serves it (a) with our API under the production server
configuration (`make serve`: granian, 2 workers of 2 threads; `--server gunicorn` for
`config/gunicorn.conf.py`), token auth, throttling and prediction logging on (the predict
rate limit is raised so that it counts but never refuses), (b) with `mlflow models serve`
of the same fitted artifact (the sklearn pipeline, featurizer included, as MLflow's pyfunc
with `predict_proba`), from its own virtual environment (created on first use under
var/bench/, never part of requirements.txt), with as many workers as ours by default, and
(c) in process: the artifact's own `predict_proba` + JSON, the served (compiled)
`predict_proba` + JSON, and the estimator alone on featurized rows.

Both servers are up together, and each point (rows per request x concurrency) is measured
in `--rounds` short rounds: in each round wrk drives ours and MLflow for `--duration`
seconds each, one after the other, the order swapped every round (ours first, then MLflow
first, ...), and at concurrency 1 the in-process calls are timed in the same round. Load
from other jobs on the machine then falls on both alike within a round: a point's ratio
is the median of its per-round ratios (each round is printed), and its other figures the
medians over rounds. The figures are req/s, rows/s, p50/p95/p99 latency and the server's
CPU milliseconds per request (utime+stime of the server's process tree from /proc).
Results go to bench/results/serving.json, with the issue's targets checked at the end:
single-row req/s at c=8 at least 2x MLflow's, 100-row rows/s at least 3x at every
concurrency, p50 at c=1 within 1 ms of the in-process call (median over rounds of our p50
minus the reference timed in that round). The load average is recorded before and after.

`--quick` runs 2 rounds of 2 s per point and only the pixel input for images (about 5
minutes); the default (4 rounds of 3 s, PNG images too) about 20.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path: a sibling bench module named like a
# standard one (bench/queue.py) would shadow it for every library imported below.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

from bench import serving_kinds as kinds  # noqa: E402
from bench.serving_servers import (  # noqa: E402
    Reference,
    Server,
    ensure_mlflow,
    run_wrk,
    start_mlflow,
    start_ours,
    stop,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIGURES = ("req_per_s", "rows_per_s", "p50_ms", "p95_ms", "p99_ms", "mean_ms",
           "server_cpu_ms_per_req")
REFERENCES = ("pipeline_predict_proba_json_p50_ms", "served_predict_proba_json_p50_ms",
              "estimator_only_p50_ms")
REFERENCE_REPEATS = 100  # per round; the artifact's call is timed a tenth as often


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def measure_point(servers: list[Server], reference: Reference | None, *, rows: int,
                  concurrency: int, rounds: int, duration: int, workdir: Path,
                  label: str) -> list[dict]:
    """``rounds`` rounds of the point, each server once per round, the order swapped every
    round; at concurrency 1 the in-process reference is timed in the round too. Returns one
    dict per round: server name (or "in_process") -> its figures."""
    out = []
    for number in range(rounds):
        order = servers if number % 2 == 0 else servers[::-1]
        figures: dict[str, dict] = {}
        for server in order:
            server.check(workdir)
            run = run_wrk(server.url, server.bodies[rows], auth=server.auth,
                          connections=concurrency, duration=duration,
                          server_pid=server.process.pid, workdir=workdir)
            run["rows_per_s"] = run["req_per_s"] * rows
            figures[server.name] = run
        if reference is not None and concurrency == 1:
            figures["in_process"] = reference.figures(rows, REFERENCE_REPEATS)
        out.append(figures)
        print(f"{label:8s} rows={rows:<4d} c={concurrency:<3d} round {number + 1}/{rounds}: "
              + _round_line(figures, [s.name for s in servers]), flush=True)
    return out


def _round_line(figures: dict, names: list[str]) -> str:
    parts = []
    for name in names:
        run = figures[name]
        parts.append(f"{name} {run['req_per_s']:7.0f} req/s p50 {run['p50_ms']:6.2f} ms "
                     f"cpu {run['server_cpu_ms_per_req']:5.2f} ms/req"
                     + (f" ERRORS {run['errors']}" if run["errors"] else ""))
    best = fastest_mlflow(figures)
    if "ours" in figures and best:
        parts.append(f"ratio {ratio(figures['ours'], figures[best]):.2f}x over {best}")
    if "in_process" in figures:
        raw = figures["in_process"]
        parts.append(f"in-process artifact {raw['pipeline_predict_proba_json_p50_ms']:.3f} / "
                     f"compiled {raw['served_predict_proba_json_p50_ms']:.3f} ms")
    return " | ".join(parts)


def ratio(ours: dict, theirs: dict) -> float:
    return ours["req_per_s"] / max(theirs["req_per_s"], 1e-9)


def fastest_mlflow(figures: dict) -> str | None:
    """The MLflow server (of those with different worker counts) with the most req/s."""
    names = [name for name in figures if name.startswith("mlflow")]
    return max(names, key=lambda name: figures[name]["req_per_s"], default=None)


def summarize(point_rounds: list[dict], rows: int, concurrency: int) -> dict[str, dict]:
    """Per server, the medians over rounds of its figures (and its rounds, as measured)."""
    out = {}
    for name in point_rounds[0]:
        runs = [r[name] for r in point_rounds]
        keys = REFERENCES if name == "in_process" else FIGURES
        merged = {k: statistics.median(run[k] for run in runs) for k in keys}
        if name != "in_process":
            merged.update(requests=sum(r["requests"] for r in runs),
                          errors=sum(r["errors"] for r in runs),
                          status_errors=sum(r["status_errors"] for r in runs))
        merged.update(rows=rows, concurrency=concurrency, rounds=runs)
        out[name] = merged
    return out


def _run(runs: list[dict], rows: int, concurrency: int) -> dict | None:
    return next((r for r in runs if r["rows"] == rows and r["concurrency"] == concurrency), None)


def _target(per_round: list[float], target: float, *, at_most: bool = False) -> dict:
    value = statistics.median(per_round)
    return {"value": round(value, 3), "target": target,
            "met": value <= target if at_most else value >= target,
            "rounds": [round(v, 3) for v in per_round]}


def targets(result: dict) -> dict:
    """The issue's targets for one kind: medians of the per-round ratios (ours over the
    fastest MLflow server of that round) and of the per-round p50 gaps."""
    servers = result["servers"]
    ours = servers.get("ours", [])
    out = {}
    points = [(1, 8, 2.0, "single_row_c8_ratio")] + [
        (100, c, 3.0, f"rows100_c{c}_ratio") for c in sorted({r["concurrency"] for r in ours})]
    for rows, concurrency, goal, name in points:
        mine = _run(ours, rows, concurrency)
        others = [_run(runs, rows, concurrency) for other, runs in servers.items()
                  if other.startswith("mlflow")]
        if mine and others and all(others):
            per_round = [{"ours": a, **{f"mlflow{i}": o["rounds"][n]
                                        for i, o in enumerate(others)}}
                         for n, a in enumerate(mine["rounds"])]
            out[name] = _target([ratio(r["ours"], r[fastest_mlflow(r)]) for r in per_round],
                                goal)
    for rows in sorted({r["rows"] for r in ours}):
        mine, raw = _run(ours, rows, 1), _run(servers.get("in_process", []), rows, 1)
        if mine and raw:
            for reference in REFERENCES[:2]:
                gaps = [a["p50_ms"] - b[reference] for a, b in zip(mine["rounds"], raw["rounds"])]
                out[f"rows{rows}_c1_p50_minus_{reference.split('_')[0]}_ms"] = _target(
                    gaps, 1.0, at_most=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default=",".join(kinds.KINDS))
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds of 2 s per point, pixels only")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per point")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rows", default="1,100")
    parser.add_argument("--workers", type=int, default=2, help="our server's worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--input", default="pixels,png", help="image inputs to our API: pixels,png")
    parser.add_argument("--mlflow-workers", default="1,2",
                        help="one MLflow server per worker count; each point compares with the "
                             "fastest of them in each round")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--out", default=str(RESULTS / "serving.json"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.input = 2, 2, "pixels"
    mlflow_workers = [int(w) for w in args.mlflow_workers.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    row_counts = [int(r) for r in args.rows.split(",")]
    chosen = [k.strip() for k in args.kinds.split(",") if k.strip()]

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
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    if not args.skip_mlflow:
        ensure_mlflow()
    import joblib

    results: dict = {"machine": {"cores": os.cpu_count()}, "config": vars(args),
                     "load_average": {"start": load()}, "kinds": {}}
    print(f"load average (1, 5, 15 min) at the start: {load()}", flush=True)
    ours, port = start_ours(args, env, workdir)
    try:
        for kind in chosen:
            reference = Reference(kind, env, row_counts, workdir)
            mlflows = []
            try:
                info = reference.info
                print(f"{kind}: trained, test accuracy {info['accuracy']:.3f}; load average "
                      f"{load()}", flush=True)
                result = results["kinds"][kind] = {"raw": info["raw"], "servers": {},
                                                   "load_average": {"start": load()}}
                servers = [Server("ours", ours,
                                  f"http://127.0.0.1:{port}/api/v1/projects/{kinds.slug(kind)}/predict",
                                  f"Token {info['key']}",
                                  {n: json.dumps({"instances": kinds.instances(kind, n)[0]}).encode()
                                   for n in row_counts})]
                if kind == "image" and "png" in args.input:
                    servers.append(_png_server(servers[0], row_counts))
                if not args.skip_mlflow:
                    estimator = joblib.load(workdir / "media" / "artifacts" / info["artifact"])
                    for workers in mlflow_workers:
                        mlflow, murl = start_mlflow(estimator, workdir, kind, workers)
                        mlflows.append(mlflow)
                        servers.append(Server(f"mlflow-w{workers}", mlflow, murl, None,
                                              {n: kinds.mlflow_body(kind, n) for n in row_counts}))
                for server in servers:
                    server.warm(workdir, row_counts[0])
                for rows in row_counts:
                    for concurrency in concurrencies:
                        point = summarize(measure_point(
                            servers, reference, rows=rows, concurrency=concurrency,
                            rounds=args.rounds, duration=args.duration, workdir=workdir,
                            label=kind), rows, concurrency)
                        for name, figures in point.items():
                            result["servers"].setdefault(name, []).append(figures)
            finally:
                reference.close()
                for mlflow in mlflows:
                    stop(mlflow)
            result["load_average"]["end"] = load()
            result["targets"] = targets(result)
            _report(kind, result)
            _write(results, args.out)
    finally:
        stop(ours)
    results["load_average"]["end"] = load()
    print(f"load average (1, 5, 15 min) at the end: {load()}")
    print(f"wrote {_write(results, args.out)}")


def _png_server(ours: Server, row_counts: list[int]) -> Server:
    """Ours again, the same digits sent as PNG files (not part of the targets)."""
    X, _y = kinds.digits()
    pngs = kinds.digits_pngs(X[:max(row_counts)])
    bodies = {n: json.dumps({"instances": [
        {"image_base64": base64.b64encode(p).decode()} for p in pngs[:n]]}).encode()
        for n in row_counts}
    return Server("ours-png", ours.process, ours.url, ours.auth, bodies)


def _report(kind: str, result: dict) -> None:
    for name, runs in result["servers"].items():
        for run in runs:
            if name == "in_process":
                print(f"{kind:8s} in-process rows={run['rows']:<4d} (median of rounds) artifact "
                      f"predict_proba+JSON {run['pipeline_predict_proba_json_p50_ms']:.3f} ms, "
                      f"served (compiled) {run['served_predict_proba_json_p50_ms']:.3f} ms, "
                      f"estimator alone {run['estimator_only_p50_ms']:.3f} ms")
                continue
            print(f"{kind + '/' + name:16s} rows={run['rows']:<4d} c={run['concurrency']:<3d} "
                  f"{run['req_per_s']:8.0f} req/s {run['rows_per_s']:9.0f} rows/s "
                  f"p50 {run['p50_ms']:6.2f} p95 {run['p95_ms']:6.2f} p99 {run['p99_ms']:6.2f} ms "
                  f"cpu {run['server_cpu_ms_per_req']:.2f} ms/req  errors {run['errors']} "
                  f"(medians of {len(run['rounds'])} rounds)")
    for name, target in result["targets"].items():
        print(f"{kind:8s} target {name}: {target['value']} (target {target['target']}; rounds "
              f"{target['rounds']}) {'met' if target['met'] else 'NOT MET'}", flush=True)


def _write(results: dict, out: str) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
    return out


if __name__ == "__main__":
    main()
