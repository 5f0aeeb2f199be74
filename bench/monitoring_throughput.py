"""Predict throughput with monitoring on and off, for bench/monitoring.py: the production
server started with ``PREDICTION_ROLLUPS`` true or false in alternating order, driven by
`wrk` (its own req/s and latency percentiles, from its Lua `done` hook)."""
from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import time
from pathlib import Path

from bench.monitoring_http import SLUG
from bench.process_stats import free_port, tree_cpu_seconds
from bench.queue import server_start, server_stop

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%(auth)s"
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.stderr:write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk_run(url: str, body: bytes, *, auth: str, connections: int, duration: float,
            workdir: Path, server_pid: int) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    body_file = workdir / f"wrk-body-{len(body)}.json"
    body_file.write_bytes(body)
    script = workdir / "wrk-post.lua"
    script.write_text(_SCRIPT % {"auth": auth, "body": body_file})
    threads = 1 if connections == 1 else 2
    cpu = tree_cpu_seconds(server_pid)
    done = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                           "-s", str(script), url], capture_output=True, text=True, check=True)
    cpu = tree_cpu_seconds(server_pid) - cpu
    line = next(line for line in done.stderr.splitlines() if line.startswith("RESULT"))
    requests, duration_us, errors, p50, p95, p99 = map(int, line.split()[1:])
    return {"requests": requests, "errors": errors, "req_per_s": requests / (duration_us / 1e6),
            "p50_ms": p50 / 1000, "p95_ms": p95 / 1000, "p99_ms": p99 / 1000,
            "server_cpu_ms_per_req": 1000 * cpu / max(requests, 1)}


def throughput(env: dict[str, str], setup: dict, workdir: Path, args) -> dict:
    """Single-row and 100-row req/s (and the server's CPU per request) per mode and round;
    the ratio on / off of the medians. Each run also checks, in the database, that the
    rollups counted its requests (on) or none of them (off)."""
    bodies = {rows: json.dumps({"instances": [{"pixels": setup["pixels"][i % 50]}
                                              for i in range(rows)]}).encode() for rows in (1, 100)}
    auth = f"Token {setup['predict_key']}"
    runs: list[dict] = []
    for round_no in range(args.throughput_rounds):
        for mode in (("on", "off") if round_no % 2 == 0 else ("off", "on")):
            metrics_dir = workdir / f"prometheus-{round_no}-{mode}"
            metrics_dir.mkdir()
            port = free_port()
            counted_before = _requests_counted(env["DATABASE_URL"])
            started = dt.datetime.now(dt.UTC)
            server = server_start({**env, "PREDICTION_ROLLUPS": "true" if mode == "on" else "false",
                                   "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                                  port, args.workers, args.threads)
            try:
                url = f"http://127.0.0.1:{port}/api/v1/projects/{SLUG}/predict"
                sent = wrk_run(url, bodies[1], auth=auth, connections=4, duration=2,
                               workdir=workdir, server_pid=server.pid)["requests"]  # warm-up
                sent_rows = sent
                for rows in (1, 100):
                    result = wrk_run(url, bodies[rows], auth=auth, connections=args.concurrency,
                                     duration=args.duration, workdir=workdir, server_pid=server.pid)
                    sent += result["requests"]
                    sent_rows += result["requests"] * rows
                    runs.append({"round": round_no, "mode": mode, "rows": rows, **result})
                    print(f"  round {round_no} monitoring {mode:3s} rows={rows:<3d} "
                          f"{result['req_per_s']:8.1f} req/s  p50 {result['p50_ms']:.2f} "
                          f"p99 {result['p99_ms']:.2f} ms  server CPU "
                          f"{result['server_cpu_ms_per_req']:.2f} ms/req  errors {result['errors']}",
                          flush=True)
                drained = _drain(env["DATABASE_URL"], started, sent_rows)
            finally:
                server_stop(server)
            counted = _requests_counted(env["DATABASE_URL"]) - counted_before
            # wrk leaves out requests still in flight when it stops: the rollups count those
            runs[-1].update(rollups_counted_requests=counted, requests_answered=sent,
                            log_writer_drained_s=drained,
                            counted_as_set=counted == 0 if mode == "off" else counted >= sent)
    return {"runs": runs, "figures": _figures(runs, paired=False),
            "rollups_as_set": all(r["counted_as_set"] for r in runs if "counted_as_set" in r)}


def throughput_paired(env: dict[str, str], setup: dict, workdir: Path, args) -> dict:
    """The same figures with both servers up at once and wrk driving them together, so the
    two see the same load from the rest of the machine (which, shared, can change a run's
    req/s several-fold between rounds). Per round, the ratio on / off; the figure is the
    median of the rounds' ratios."""
    bodies = {rows: json.dumps({"instances": [{"pixels": setup["pixels"][i % 50]}
                                              for i in range(rows)]}).encode() for rows in (1, 100)}
    auth = f"Token {setup['predict_key']}"
    servers: dict[str, tuple] = {}
    counted_before = _requests_counted(env["DATABASE_URL"])
    started = dt.datetime.now(dt.UTC)
    runs: list[dict] = []
    sent = {"on": 0, "off": 0}
    sent_rows = 0
    try:
        for mode in ("on", "off"):
            metrics_dir = workdir / f"prometheus-paired-{mode}"
            metrics_dir.mkdir()
            port = free_port()
            server = server_start({**env, "PREDICTION_ROLLUPS": "true" if mode == "on" else "false",
                                   "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                                  port, args.workers, args.threads)
            servers[mode] = (server, f"http://127.0.0.1:{port}/api/v1/projects/{SLUG}/predict")
        for mode, result in _together(servers, bodies[1], auth, 4, 2, workdir).items():
            sent[mode] += result["requests"]  # warm-up
            sent_rows += result["requests"]
        for round_no in range(args.throughput_rounds):
            for rows in (1, 100):
                results = _together(servers, bodies[rows], auth, args.concurrency,
                                    args.duration, workdir)
                for mode, result in results.items():
                    sent[mode] += result["requests"]
                    sent_rows += result["requests"] * rows
                    runs.append({"round": round_no, "mode": mode, "rows": rows, **result})
                on, off = results["on"], results["off"]
                print(f"  round {round_no} rows={rows:<3d} on {on['req_per_s']:8.1f} req/s "
                      f"(CPU {on['server_cpu_ms_per_req']:.2f} ms/req)  off "
                      f"{off['req_per_s']:8.1f} req/s (CPU {off['server_cpu_ms_per_req']:.2f})"
                      f"  on/off {on['req_per_s'] / off['req_per_s']:.3f}", flush=True)
        drained = _drain(env["DATABASE_URL"], started, sent_rows)
        # Rows of requests wrk stopped waiting for can make up the row count above while
        # the on server's last flush is still to come: wait for its requests' counts too.
        waited = time.perf_counter()
        while (_requests_counted(env["DATABASE_URL"]) - counted_before < sent["on"]
               and time.perf_counter() - waited < 60):
            time.sleep(0.5)
        drained += round(time.perf_counter() - waited, 1)
    finally:
        for server, _url in servers.values():
            server_stop(server)
    counted = _requests_counted(env["DATABASE_URL"]) - counted_before
    # The off server's requests must not be counted: far more than the on server's would be.
    as_set = sent["on"] <= counted < sent["on"] + max(sent["off"] // 2, 1)
    return {"paired": True, "runs": runs, "figures": _figures(runs, paired=True), "log_writer_drained_s": drained,
            "rollups_counted_requests": counted, "requests_answered": sent,
            "rollups_as_set": as_set}


def _figures(runs: list[dict], *, paired: bool) -> dict:
    """Per row count: req/s and CPU per request, on and off, and the ratio on / off: of the
    medians (runs one after the other), or the median of each round's ratio (paired)."""
    figures = {}
    for rows in (1, 100):
        mine = [r for r in runs if r["rows"] == rows]
        figure = {}
        for key in ("req_per_s", "server_cpu_ms_per_req"):
            on = [r[key] for r in mine if r["mode"] == "on"]
            off = [r[key] for r in mine if r["mode"] == "off"]
            figure[key] = {"on": [round(x, 2) for x in on], "off": [round(x, 2) for x in off]}
            if paired:
                ratios = [a / b for a, b in zip(on, off)]
                figure[key]["ratios"] = [round(x, 3) for x in ratios]
                figure[key]["ratio_of_medians"] = round(statistics.median(ratios), 3)
            else:
                figure[key]["ratio_of_medians"] = round(statistics.median(on) / statistics.median(off), 3)
        figures[f"rows_{rows}"] = figure
    return figures


def _together(servers: dict[str, tuple], body: bytes, auth: str, connections: int,
              duration: float, workdir: Path) -> dict[str, dict]:
    """wrk against every server at once; each server's figures."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(servers)) as pool:
        futures = {mode: pool.submit(wrk_run, url, body, auth=auth, connections=connections,
                                     duration=duration, workdir=workdir / mode,
                                     server_pid=server.pid)
                   for mode, (server, url) in servers.items()}
        return {mode: future.result() for mode, future in futures.items()}


def _drain(database_url: str, since: dt.datetime, rows: int, timeout: float = 90) -> float:
    """Wait until the log writers have written the run's rows (they lag under load); the
    seconds it took."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.perf_counter() - started < timeout:
            written = conn.execute(
                "SELECT COUNT(*) FROM serving_predictionlog WHERE created_at >= %s AND project_id ="
                " (SELECT id FROM annotation_project WHERE slug = %s)", [since, SLUG]).fetchone()[0]
            if written >= rows:
                break
            time.sleep(0.5)
    return round(time.perf_counter() - started, 1)


def _requests_counted(database_url: str) -> int:
    """Every predict request the hour rollups hold (a check, not a measurement)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT COALESCE(SUM(requests), 0) FROM serving_predictionhourrollup"
                            ).fetchone()[0]
