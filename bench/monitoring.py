"""Monitoring benchmark: the monitoring page and JSON over 10 million prediction logs.

One command (from the repository root, PostgreSQL at 127.0.0.1:5432, user postgres; Debian's
`wrk`):

    .venv/bin/python bench/monitoring.py [--rows 10000000] [--quick] [--database NAME]

1. A scratch database (``--database``, dropped and created again) gets an image project of
   scikit-learn's 8x8 digits with three model versions trained by the real services, then
   ``--rows`` prediction-log rows over ``--days`` (30) written with COPY
   (``bench/monitoring_data.py`` has the mix), then ``manage.py rollups_rebuild`` fills
   the rollups from them, as after an upgrade (timed).
2. The production server as ``make serve`` runs it (granian, 2 workers of 2 threads,
   ``config.settings.production``). An owner logs in through the login page; the page
   ``/projects/<slug>/monitoring/?window=…`` is read with that session, the JSON
   ``/api/v1/projects/<slug>/monitoring?window=…`` with a ``monitor`` token: ``--rounds``
   rounds of ``--requests`` requests per target, targets interleaved, after a warm-up;
   p50/p95/p99 per target, client side, over one keep-alive connection.
3. Freshness: one prediction through the predict API, then the JSON and the page polled
   every 0.1 s until their request count for the 24 h window has moved (three times; the
   worst is reported). An open page also waits for its own refresh, every 30 s.
4. Throughput with monitoring on and off (``PREDICTION_ROLLUPS``): the same server started
   either way, in rounds that alternate which goes first; ``wrk`` sends single-row and
   100-row predict requests at ``--concurrency`` for ``--duration`` s each. The ratio of
   the medians of req/s (on / off) is the figure; each run also checks that the rollups
   counted its requests (on) or did not (off).

Everything is printed against the targets (issue 12: p95 ≤ 150 ms for the 24 h and 30 d
windows, on the page within 60 s, throughput on ≥ 0.95 × off) and written to
bench/results/monitoring.json. ``--quick``: 1M rows, fewer rounds, shorter runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's queue: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import http.cookies  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

from bench.monitoring_data import history_copy  # noqa: E402
from bench.monitoring_wrk import wrk_run  # noqa: E402
from bench.process_stats import free_port  # noqa: E402
from bench.queue import server_start, server_stop, summary_ms  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG = "postgres://postgres@127.0.0.1:5432/"
SLUG = "monbench"
TARGET_P95_MS, TARGET_FRESH_S, TARGET_RATIO = 150.0, 60.0, 0.95
REQUESTS_FIELD = re.compile(rb'data-field="traffic\.requests">(\d+)<')


# --- set-up (Django in this process) -----------------------------------------------------------


def db_recreate(name: str, env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    for command in (["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)


def project_setup(env: dict[str, str]) -> dict:
    """The digits project with three trained versions, its tokens and an owner's login."""
    os.environ.update(env)
    import django

    django.setup()
    import io

    import numpy as np
    from django.contrib.auth import get_user_model
    from PIL import Image
    from sklearn.datasets import load_digits

    from annotation.demo import samples_create_images
    from annotation.models import Label, Sample
    from annotation.services import project_create
    from learning.services import model_version_request, model_version_train
    from serving.services import api_token_create

    X, y = load_digits(return_X_y=True)
    pixels = np.rint(X * (255 / 16)).astype(int)
    owner = get_user_model().objects.create_user("monbench-owner", password=secrets.token_urlsafe(12))
    password = secrets.token_urlsafe(16)
    owner.set_password(password)
    owner.save()
    project = project_create(owner=owner, slug=SLUG, name="Monitoring bench", kind="image",
                             labels=[str(d) for d in range(10)], batch_size=100_000,
                             promotion="latest")
    project.image_size = 8
    project.save(update_fields=["image_size"])

    def png(row) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(row.reshape(8, 8).astype(np.uint8), mode="L").save(buffer, format="PNG")
        return buffer.getvalue()

    samples_create_images(project=project, images=((f"d{i}", png(row)) for i, row in enumerate(pixels)))
    truth = {f"d{i}": str(label) for i, label in enumerate(y)}
    samples = list(Sample.objects.filter(project=project))
    Label.objects.bulk_create([Label(sample=s, annotator=owner, value=truth[s.external_id])
                               for s in samples])
    Sample.objects.filter(project=project).update(status="labeled")
    versions = []
    for _ in range(3):
        version = model_version_request(project=project)
        model_version_train(version_id=version.pk)
        version.refresh_from_db()
        versions.append(version)
    assert versions[-1].is_served, versions[-1].error
    predict_token, predict_key = api_token_create(project=project, scopes=["predict"])
    _monitor, monitor_key = api_token_create(project=project, scopes=["monitor"])
    from django.db import connections

    connections.close_all()
    return {"project_id": project.pk, "version_ids": [v.pk for v in versions],
            "token_id": predict_token.pk, "predict_key": predict_key, "monitor_key": monitor_key,
            "username": owner.username, "password": password,
            "pixels": pixels[:50].tolist()}


def project_reuse(env: dict[str, str]) -> dict:
    """The project a previous run left (``--keep-db``): fresh tokens and password."""
    os.environ.update(env)
    import django

    django.setup()
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connections
    from sklearn.datasets import load_digits

    from annotation.models import ApiToken, Project
    from serving.services import api_token_create

    project = Project.objects.get(slug=SLUG)
    owner = get_user_model().objects.get(username="monbench-owner")
    password = secrets.token_urlsafe(16)
    owner.set_password(password)
    owner.save()
    predict_token = ApiToken.objects.filter(project=project, scopes=["predict"]).order_by("pk").first()
    _token, predict_key = api_token_create(project=project, scopes=["predict"])
    _monitor, monitor_key = api_token_create(project=project, scopes=["monitor"])
    X, _y = load_digits(return_X_y=True)
    connections.close_all()
    return {"project_id": project.pk, "token_id": predict_token.pk, "predict_key": predict_key,
            "monitor_key": monitor_key, "username": owner.username, "password": password,
            "pixels": np.rint(X[:50] * (255 / 16)).astype(int).tolist()}


def history_load(database: str, setup: dict, *, rows: int, days: float) -> dict:
    """COPY the historical rows, vacuum and analyze the table as autovacuum would have."""
    import psycopg

    from serving.models import PredictionLog

    table = PredictionLog._meta.db_table
    history = history_copy(PG + database, table=table, project_id=setup["project_id"],
                           version_ids=setup["version_ids"], token_id=setup["token_id"],
                           rows=rows, days=days, now=dt.datetime.now(dt.UTC),
                           instances=setup["pixels"]).as_dict()
    started = time.perf_counter()
    with psycopg.connect(PG + database, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {table}")
        conn.execute("CHECKPOINT")
    history["vacuum_seconds"] = round(time.perf_counter() - started, 2)
    return history


def rollups_rebuild(env: dict[str, str]) -> dict:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "manage.py", "rollups_rebuild", "--project", SLUG],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return {"seconds": round(time.perf_counter() - started, 2), "output": out.strip()}


# --- HTTP as a user ----------------------------------------------------------------------------


class Client:
    """One keep-alive connection with a cookie jar, as a browser tab keeps."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # a dropped keep-alive connection: once more on a new one
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        seconds = time.perf_counter() - started
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie(header)
            self.cookies.update({k: m.value for k, m in jar.items()})
        return response.status, data, seconds

    def login(self, username: str, password: str) -> None:
        status, page, _ = self.request("GET", "/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise SystemExit(f"login page answered {status}")
        body = urllib.parse.urlencode({"username": username, "password": password,
                                       "csrfmiddlewaretoken": token.group(1).decode()}).encode()
        status, _, _ = self.request("POST", "/login/", body, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"http://127.0.0.1:{self.port}/login/"})
        if status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"login refused ({status})")


def targets_list(windows: list[str]) -> list[tuple[str, str]]:
    return [(kind, window) for window in windows for kind in ("page", "json")]


def target_path(kind: str, window: str) -> str:
    if kind == "page":
        return f"/projects/{SLUG}/monitoring/?window={window}"
    return f"/api/v1/projects/{SLUG}/monitoring?window={window}"


def read_latency(client: Client, monitor_key: str, *, windows: list[str], rounds: int,
                 requests: int) -> dict:
    """Interleaved rounds of page and JSON reads per window; latencies per target."""
    auth = {"Authorization": f"Token {monitor_key}"}
    times: dict[tuple[str, str], list[float]] = {t: [] for t in targets_list(windows)}
    sample = {}
    for kind, window in times:  # warm-up: imports, connections, caches of both workers
        for _ in range(3):
            status, body, _ = client.request("GET", target_path(kind, window),
                                             headers=auth if kind == "json" else None)
            if status != 200:
                raise SystemExit(f"{kind} {window} answered {status}: {body[:300]!r}")
        if kind == "json":
            sample[window] = json.loads(body)
    for _ in range(rounds):
        for kind, window in times:
            for _ in range(requests):
                status, _, seconds = client.request("GET", target_path(kind, window),
                                                    headers=auth if kind == "json" else None)
                assert status == 200, status
                times[(kind, window)].append(seconds)
    figures = {f"{kind}_{window}": summary_ms(values) for (kind, window), values in times.items()}
    return {"latency_ms": figures,
            "json_totals": {w: {"requests": s["traffic"]["requests"], "rows": s["traffic"]["rows"],
                                "live_accuracy_n": s["live_accuracy"]["n"],
                                "latency_p95_ms": s["latency_ms"]["p95"]}
                            for w, s in sample.items()}}


def freshness(client: Client, setup: dict, *, tries: int = 3, timeout: float = 120) -> dict:
    """Seconds from a prediction's answer until the JSON and the page count it."""
    auth = {"Authorization": f"Token {setup['monitor_key']}"}
    predict_headers = {"Authorization": f"Token {setup['predict_key']}",
                       "Content-Type": "application/json"}
    body = json.dumps({"instances": [{"pixels": setup["pixels"][0]}]}).encode()

    def counts() -> tuple[int, int]:
        _, data, _ = client.request("GET", target_path("json", "24h"), headers=auth)
        _, page, _ = client.request("GET", target_path("page", "24h"))
        return json.loads(data)["traffic"]["requests"], int(REQUESTS_FIELD.search(page).group(1))

    results = []
    for _ in range(tries):
        json_before, page_before = counts()
        status, answer, _ = client.request("POST", f"/api/v1/projects/{SLUG}/predict", body,
                                           predict_headers)
        if status != 200:
            raise SystemExit(f"predict answered {status}: {answer[:300]!r}")
        sent = time.perf_counter()
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.perf_counter() - sent < timeout:
            time.sleep(0.1)
            json_now, page_now = counts()
            if "json" not in seen and json_now > json_before:
                seen["json"] = time.perf_counter() - sent
            if "page" not in seen and page_now > page_before:
                seen["page"] = time.perf_counter() - sent
        results.append({k: round(v, 2) for k, v in seen.items()})
    worst = {kind: max((r.get(kind, float("inf")) for r in results)) for kind in ("json", "page")}
    return {"tries": results, "worst_s": worst}


# --- throughput, monitoring on and off -------------------------------------------------------------


def throughput(env: dict[str, str], setup: dict, workdir: Path, args) -> dict:
    bodies = {rows: json.dumps({"instances": [{"pixels": setup["pixels"][i % 50]}
                                              for i in range(rows)]}).encode() for rows in (1, 100)}
    auth = f"Token {setup['predict_key']}"
    runs: list[dict] = []
    for round_no in range(args.throughput_rounds):
        for mode in (("on", "off") if round_no % 2 == 0 else ("off", "on")):
            metrics_dir = workdir / f"prometheus-{round_no}-{mode}"
            metrics_dir.mkdir()
            port = free_port()
            server = server_start({**env, "PREDICTION_ROLLUPS": "true" if mode == "on" else "false",
                                   "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                                  port, args.workers, args.threads)
            try:
                client = Client(port)
                counted_before = _requests_last_hour(client, setup["monitor_key"])
                url = f"http://127.0.0.1:{port}/api/v1/projects/{SLUG}/predict"
                wrk_run(url, bodies[1], auth=auth, connections=4, duration=2, workdir=workdir)
                sent = 0
                for rows in (1, 100):
                    result = wrk_run(url, bodies[rows], auth=auth, connections=args.concurrency,
                                     duration=args.duration, workdir=workdir)
                    sent += result["requests"]
                    runs.append({"round": round_no, "mode": mode, "rows": rows, **result})
                    print(f"  round {round_no} monitoring {mode:3s} rows={rows:<3d} "
                          f"{result['req_per_s']:8.1f} req/s  p50 {result['p50_ms']:.2f} "
                          f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}", flush=True)
                time.sleep(float(env.get("PREDICTION_LOG_FLUSH_SECONDS", "1")) + 2)
                counted = _requests_last_hour(client, setup["monitor_key"]) - counted_before
                runs[-1]["rollups_counted_requests"] = counted
                runs[-1]["requests_sent_incl_warmup"] = sent
            finally:
                server_stop(server)
    figures = {}
    for rows in (1, 100):
        on = [r["req_per_s"] for r in runs if r["rows"] == rows and r["mode"] == "on"]
        off = [r["req_per_s"] for r in runs if r["rows"] == rows and r["mode"] == "off"]
        per_round = [a / b for a, b in zip(on, off) if b]
        figures[f"rows_{rows}"] = {
            "on_req_per_s": [round(x, 1) for x in on], "off_req_per_s": [round(x, 1) for x in off],
            "ratio_of_medians": round(statistics.median(on) / statistics.median(off), 3),
            "ratios_per_round": [round(x, 3) for x in per_round]}
    return {"runs": runs, "figures": figures}


def _requests_last_hour(client: Client, monitor_key: str) -> int:
    _, data, _ = client.request("GET", target_path("json", "1h"),
                                headers={"Authorization": f"Token {monitor_key}"})
    return json.loads(data)["traffic"]["requests"]


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of page/JSON reads")
    parser.add_argument("--requests", type=int, default=10, help="reads per target per round")
    parser.add_argument("--windows", default="1h,24h,7d,30d")
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--database", default="annotation_monitoringbench")
    parser.add_argument("--quick", action="store_true", help="1M rows, 3 rounds, 5 s wrk runs")
    parser.add_argument("--keep-db", action="store_true", help="leave the scratch database")
    parser.add_argument("--reuse-db", action="store_true",
                        help="measure the database a --keep-db run left (no set-up, no COPY)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "monitoring.json"))
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rounds, args.duration, args.throughput_rounds = 1_000_000, 3, 5, 2
    if shutil.which("wrk") is None and not args.skip_throughput:
        raise SystemExit("wrk is required: apt-get install wrk")
    windows = args.windows.split(",")
    began = time.perf_counter()

    workdir = Path(tempfile.mkdtemp(prefix="monbench-"))
    env = {
        **os.environ,
        "DATABASE_URL": PG + args.database,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),  # production settings refuse a published key
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MEDIA_ROOT": str(workdir / "media"),
        "STATIC_ROOT": str(workdir / "static"),
        "CELERY_BROKER_DIR": str(workdir / "broker"),  # no worker: retrains stay queued
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        # Counted, never refused: the bench reads and predicts far above a person's rate.
        "API_THROTTLE_READ": "1000000000/min",
        "API_THROTTLE_PREDICT": "1000000000/min",
        # The history spans --days; keep all of it raw so the rebuild reads every row.
        "PREDICTION_LOG_RETENTION_DAYS": str(int(args.days) + 2),
        "PYTHONPATH": str(ROOT),
    }
    (workdir / "prometheus").mkdir()
    report: dict = {"benchmark": "monitoring", "rows": args.rows, "days": args.days,
                    "machine": {"cpus": os.cpu_count(),
                                "note": "client, server and PostgreSQL share the cores"},
                    "server": {"granian_workers": args.workers, "threads": args.threads,
                               "settings": "config.settings.production"}}
    if args.reuse_db:
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
                       cwd=ROOT, env=env, check=True)
        setup = project_reuse(env)
        report["reused_database"] = True
    else:
        print(f"setting up {args.database}: project, three trained versions", flush=True)
        db_recreate(args.database, env)
        setup = project_setup(env)
        print(f"COPY {args.rows:,} prediction-log rows over {args.days:g} days", flush=True)
        report["history"] = history_load(args.database, setup, rows=args.rows, days=args.days)
        h = report["history"]
        print(f"  {h['rows']:,} rows ({h['requests']:,} requests, {h['feedback']:,} with "
              f"feedback) in {h['seconds']} s, {h['rows_per_s']:,} rows/s; VACUUM ANALYZE "
              f"{h['vacuum_seconds']} s", flush=True)
        report["rollups_rebuild"] = rollups_rebuild(env)
        print(f"rollups_rebuild: {report['rollups_rebuild']['output']} in "
              f"{report['rollups_rebuild']['seconds']} s", flush=True)

    port = free_port()
    server = server_start({**env}, port, args.workers, args.threads)
    try:
        client = Client(port)
        client.login(setup["username"], setup["password"])
        print(f"reading page and JSON: {args.rounds} rounds x {args.requests} per target",
              flush=True)
        report["reads"] = read_latency(client, setup["monitor_key"], windows=windows,
                                       rounds=args.rounds, requests=args.requests)
        for name, figures in report["reads"]["latency_ms"].items():
            print(f"  {name:10s} p50 {figures['p50']:7.1f}  p95 {figures['p95']:7.1f}  "
                  f"p99 {figures['p99']:7.1f} ms", flush=True)
        report["freshness"] = freshness(client, setup)
        print(f"freshness: {report['freshness']['tries']}", flush=True)
    finally:
        server_stop(server)
    if not args.skip_throughput:
        print(f"throughput, monitoring on vs off: {args.throughput_rounds} rounds, "
              f"c={args.concurrency}, {args.duration} s per run", flush=True)
        report["throughput"] = throughput(env, setup, workdir, args)
    report["targets"] = targets(report)
    report["seconds"] = round(time.perf_counter() - began, 1)
    if not (args.keep_db or args.reuse_db):
        import psycopg

        with psycopg.connect(PG + "postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    shutil.rmtree(workdir, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out} ({report['seconds']} s in all)")


def targets(report: dict) -> dict:
    """Each figure of issue 12 against its target, printed and returned."""
    checks = {}
    latency = report["reads"]["latency_ms"]
    for name in ("page_24h", "page_30d", "json_24h", "json_30d"):
        if name in latency:
            checks[f"{name}_p95_ms"] = (latency[name]["p95"], f"<= {TARGET_P95_MS:g}",
                                        latency[name]["p95"] <= TARGET_P95_MS)
    worst = report["freshness"]["worst_s"]
    for kind in ("json", "page"):
        checks[f"fresh_{kind}_s"] = (worst[kind], f"<= {TARGET_FRESH_S:g}", worst[kind] <= TARGET_FRESH_S)
    checks["fresh_open_page_worst_s"] = (round(worst["page"] + 30, 2), f"<= {TARGET_FRESH_S:g}",
                                         worst["page"] + 30 <= TARGET_FRESH_S)
    for rows, figures in report.get("throughput", {}).get("figures", {}).items():
        ratio = figures["ratio_of_medians"]
        checks[f"throughput_{rows}_on_over_off"] = (ratio, f">= {TARGET_RATIO:g}", ratio >= TARGET_RATIO)
    print("\nagainst the targets:")
    for name, (value, target, met) in checks.items():
        print(f"  {name:34s} {value!s:>10}  target {target:8s} {'met' if met else 'NOT MET'}")
    return {name: {"value": v, "target": t, "met": m} for name, (v, t, m) in checks.items()}


if __name__ == "__main__":
    main()
