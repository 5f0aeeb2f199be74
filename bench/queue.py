"""Queue benchmark: next-sample and label-submit latency over HTTP at 10k/100k/1M samples.

One command (from the repository root, PostgreSQL at 127.0.0.1:5432, user postgres):

    .venv/bin/python bench/queue.py [--sizes 10000,100000,1000000] [--clients 1,8,32]
                                    [--duration 10] [--repeats 1] [--quick]

It creates a scratch database (``--database``, dropped and created again), and for each
pool size a text project whose samples come in through the real import path (a CSV of N
deterministic rows, ``import_job_create_from_path`` + ``import_job_run``, i.e. the
``import_samples`` command: check pass, then COPY batches); that gives the import rows/s.
The samples then get random scores in one UPDATE, as if a model had scored the pool, so
the queue orders by score. The server runs in the production configuration (``make
serve``: granian, 2 workers of 2 threads, ``config.settings.production``, DEBUG off).

Each client is one annotator with a personal token (``personal_token_create``, what
``create_user --token`` does), in its own process with one keep-alive connection, looping
GET ``next`` -> POST ``labels`` for that sample for ``--duration`` seconds. Latencies are
taken per request, client-side, and merged: p50/p95/p99 of next and submit per size and
concurrency, throughput, and the server's CPU per label (utime+stime of its process tree).
The clients share the machine's cores with the server and PostgreSQL, so at high
concurrency part of each latency is waiting for a core.

Then (unless ``--no-floor``) the same clients run against two servers that do no work
(``bench/queue_floor.py``: a bare WSGI app, and Django with the production middleware and
a DRF view answering constants), with the same server settings: the latency this machine
gives a request before any work is done.

Each run starts from the same pool: labels, leases and model versions of the previous run
are removed, the tables vacuumed and a checkpoint taken. Checks on every run (overlap 1): no sample is handed
to two annotators, and the project's label rows equal the submits the server accepted. Results go to
bench/results/queue.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's ``queue``; running it as a script puts
# bench/ first on sys.path, which would shadow the real one for multiprocessing and others.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.process_stats import free_port, tree_cpu_seconds  # noqa: E402

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DB_NAME = "annotation_queuebench"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
LABELS = ["pos", "neg", "neutral"]
WORDS = ("stocks rally market falls shares earnings growth loss profit quarter outlook "
         "guidance bank rates inflation jobs report strong weak beat miss record high low "
         "investors traders analysts cut raise forecast demand supply oil gold tech").split()


# --- helpers ----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summary_ms(latencies: list[float]) -> dict:
    values = sorted(latencies)
    return {
        "n": len(values),
        **{f"p{q}": round(1000 * percentile(values, q), 2) if values else None
           for q in (50, 95, 99)},
        "max": round(1000 * values[-1], 2) if values else None,
    }


def write_csv(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        out.write("external_id,text\n")
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24)))
            out.write(f"r{i},{words}\n")


# --- database side (Django in the parent process only) -----------------------------------------


def db_recreate(env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)


def db_drop() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def pool_build(*, size: int, clients: int, workdir: Path) -> dict:
    """Create the project, import ``size`` rows through the import path, score the pool,
    and create ``clients`` annotators with personal tokens. Returns slug, tokens, import figures."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import ImportJob, Project, Sample
    from annotation.services import (
        import_job_create_from_path, import_job_run, membership_set, personal_token_create,
        project_create,
    )

    users = get_user_model().objects
    owner, _ = users.get_or_create(username="qb-owner")
    slug = f"qb-{size}"
    project = project_create(owner=owner, slug=slug, name=f"queue bench {size}",
                             kind=Project.Kind.TEXT, labels=LABELS)
    path = workdir / f"{slug}.csv"
    write_csv(path, size, seed=size)
    started = time.perf_counter()
    job = import_job_create_from_path(project=project, user=owner, path=str(path))
    job = import_job_run(job_id=job.pk, path=str(path))
    seconds = time.perf_counter() - started
    if job.status != ImportJob.Status.DONE:
        raise SystemExit(f"import failed: {job.report}")
    path.unlink()
    started = time.perf_counter()
    table = Sample._meta.db_table
    with connection.cursor() as cursor:  # as if a model had scored the pool
        cursor.execute(f"UPDATE {table} SET score = random() WHERE project_id = %s", [project.pk])
        cursor.execute(f"VACUUM ANALYZE {table}")
    score_seconds = time.perf_counter() - started
    tokens = []
    for i in range(clients):
        user, _ = users.get_or_create(username=f"qb-{size}-a{i}")
        membership_set(project=project, user=user, role="annotator")
        tokens.append(personal_token_create(project=project, user=user)[1])
    return {"slug": slug, "project_id": project.pk, "tokens": tokens,
            "import": {"rows": job.rows_ok, "seconds": round(seconds, 3),
                       "rows_per_s": round(job.rows_ok / seconds),
                       "score_update_seconds": round(score_seconds, 3)}}


def pool_reset(project_id: int) -> None:
    """Put every sample of the project back in the queue, unlabeled and unleased, with no
    model versions, and vacuum: each run starts from the same pool (a 10k pool would
    otherwise run dry over the runs at hundreds of labels a second)."""
    from django.db import connection

    from annotation.models import Label, LabelCounts, Lease, Sample
    from learning.models import ModelVersion

    table = {model: connection.ops.quote_name(model._meta.db_table)
             for model in (Label, LabelCounts, Lease, Sample)}
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table[Label]} WHERE sample_id IN"
                       f" (SELECT id FROM {table[Sample]} WHERE project_id = %s)", [project_id])
        cursor.execute(f"DELETE FROM {table[Lease]} WHERE project_id = %s", [project_id])
        cursor.execute(f"UPDATE {table[Sample]} SET status = %s, label_count = 0"
                       f" WHERE project_id = %s AND (status <> %s OR label_count <> 0)",
                       [Sample.Status.UNLABELED, project_id, Sample.Status.UNLABELED])
        cursor.execute(f"UPDATE {table[LabelCounts]} SET labeled_pool = 0, labeled_test = 0,"
                       f" current_labels = 0 WHERE project_id = %s", [project_id])
    ModelVersion.objects.filter(project_id=project_id).delete()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table[Sample]}, {table[Lease]}, {table[Label]},"
                       f" {table[LabelCounts]}")
        # Write out what the imports left in the buffers now rather than in a checkpoint
        # during a run (seen: a 10k run right after the 1M import had p99 of seconds).
        cursor.execute("CHECKPOINT")
    connection.close()


def project_label_rows(project_id: int) -> tuple[int, int]:
    """Return the project's label rows and how many samples have more than one label."""
    from django.db.models import Count

    from annotation.models import Label

    labels = Label.objects.filter(sample__project_id=project_id)
    doubled = labels.values("sample_id").annotate(n=Count("id")).filter(n__gt=1).count()
    return labels.count(), doubled


# --- load generator (forked processes: http.client only) ---------------------------------------


def client_loop(port: int, slug: str, token: str, start_at: float, stop_at: float,
                think: float, out: mp.Queue) -> None:
    """One annotator: GET next, (think), POST labels for that sample, until ``stop_at``."""
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    next_path = f"/api/v1/projects/{slug}/next"
    label_path = f"/api/v1/projects/{slug}/labels"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    next_lat, submit_lat, handed, accepted, errors = [], [], [], 0, {}
    rng = random.Random(token)
    clock = time.perf_counter
    while time.time() < start_at:
        time.sleep(0.001)
    if think:
        time.sleep(rng.uniform(0, think))  # annotators do not all start at the same instant
    try:
        while time.time() < stop_at:
            t0 = clock()
            conn.request("GET", next_path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            next_lat.append(clock() - t0)
            if response.status != 200:
                errors[f"next {response.status}"] = errors.get(f"next {response.status}", 0) + 1
                continue
            sample = json.loads(body)["sample"]
            if sample is None:
                errors["queue empty"] = 1
                break
            handed.append(sample["id"])
            if think:
                # Half to one and a half times the mean: annotators who all paused exactly
                # as long would arrive in lockstep, every one at the same instant.
                time.sleep(think * rng.uniform(0.5, 1.5))
            payload = json.dumps({"sample": sample["id"], "value": rng.choice(LABELS)})
            t0 = clock()
            conn.request("POST", label_path, body=payload, headers=headers)
            response = conn.getresponse()
            response.read()
            submit_lat.append(clock() - t0)
            if response.status == 201:
                accepted += 1
            else:
                key = f"labels {response.status}"
                errors[key] = errors.get(key, 0) + 1
    except (OSError, http.client.HTTPException) as exc:
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    out.put({"next": next_lat, "submit": submit_lat, "handed": handed, "accepted": accepted,
             "errors": errors})


def run_load(*, port: int, slug: str, tokens: list[str], duration: float,
             server_pid: int, think: float = 0.0) -> dict:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.5 + 0.02 * len(tokens)
    stop_at = start_at + duration
    procs = [ctx.Process(target=client_loop, args=(port, slug, t, start_at, stop_at, think, out))
             for t in tokens]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0, wall0 = tree_cpu_seconds(server_pid), time.perf_counter()
    results = [out.get(timeout=duration + 120) for _ in procs]
    cpu1, wall1 = tree_cpu_seconds(server_pid), time.perf_counter()
    for p in procs:
        p.join()
    next_lat = [x for r in results for x in r["next"]]
    submit_lat = [x for r in results for x in r["submit"]]
    handed = [x for r in results for x in r["handed"]]
    accepted = sum(r["accepted"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for key, n in r["errors"].items():
            errors[key] = errors.get(key, 0) + n
    # Overlap 1: a sample may come back to the same annotator (a retried lease), never to two.
    owners: dict[int, set[int]] = {}
    for i, r in enumerate(results):
        for sample_id in r["handed"]:
            owners.setdefault(sample_id, set()).add(i)
    shared = sum(1 for who in owners.values() if len(who) > 1)
    wall = wall1 - wall0
    return {
        "clients": len(tokens),
        "seconds": round(wall, 2),
        "next_ms": summary_ms(next_lat),
        "submit_ms": summary_ms(submit_lat),
        "labels_per_s": round(accepted / duration, 1),
        "requests_per_s": round((len(next_lat) + len(submit_lat)) / duration, 1),
        "server_cpu_ms_per_label": round(1000 * (cpu1 - cpu0) / accepted, 2) if accepted else None,
        "accepted": accepted,
        "errors": errors,
        "samples_handed_to_two_annotators": shared,
        "_handed": handed,
    }


# --- server ------------------------------------------------------------------------------------


def server_start(env: dict[str, str], port: int, workers: int, threads: int,
                 app: str = "config.wsgi:application") -> subprocess.Popen:
    bindir = Path(sys.executable).parent
    command = [str(bindir / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--blocking-threads", str(threads),
               "--no-ws", "--log-level", "warning", app]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/projects/none/next")
            conn.getresponse().read()
            return process
        except OSError:
            time.sleep(0.3)
    server_stop(process)
    raise SystemExit("server did not come up")


def server_stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def floor_runs(env: dict[str, str], *, concurrency: list[int], duration: float, workers: int,
               threads: int) -> dict:
    """The same clients against servers that do no work (``bench/queue_floor.py``): a bare
    WSGI app, and Django with the production middleware and a DRF view. What is left of a
    latency above these is the work itself."""
    floors = {}
    for name, app in (("raw_wsgi", "bench.queue_floor:raw_application"),
                      ("django_drf", "bench.queue_floor:django_application")):
        port = free_port()
        server = server_start(env, port, workers, threads, app=app)
        try:
            run_load(port=port, slug="floor", tokens=["floor"] * 4, duration=1.5,
                     server_pid=server.pid)
            floors[name] = {}
            for clients in concurrency:
                result = run_load(port=port, slug="floor", tokens=["floor"] * clients,
                                  duration=duration, server_pid=server.pid)
                row = {key: result[key] for key in ("next_ms", "submit_ms", "requests_per_s")}
                row["pairs_per_s"] = round(result["requests_per_s"] / 2, 1)
                floors[name][clients] = row
                n = row["next_ms"]
                print(f"floor {name:>10} {clients:>3} clients: next p50/p95/p99 {n['p50']:7.2f} "
                      f"{n['p95']:7.2f} {n['p99']:7.2f} ms | {row['pairs_per_s']:8.1f} "
                      f"next+submit pairs/s", flush=True)
        finally:
            server_stop(server)
    return floors


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per size and concurrency; the figures are their medians")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="an annotator's mean pause between receiving a sample and "
                             "submitting its label (uniform, 0.5x-1.5x); 0 (default) drives "
                             "the server flat out")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="sizes 2000,20000, clients 1,8, 3 s runs")
    parser.add_argument("--keep-db", action="store_true", help="leave the scratch database")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the runs against do-nothing servers (bench/queue_floor.py)")
    parser.add_argument("--out", default=str(RESULTS / "queue.json"))
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.clients, args.duration = "2000,20000", "1,8", 3.0
        args.no_floor = True
    sizes = [int(s) for s in args.sizes.split(",")]
    concurrency = [int(c) for c in args.clients.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="queuebench-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),  # production settings refuse a published key
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Counted, never refused: the bench drives far more than an annotator's rate.
        "API_THROTTLE_READ": "1000000000/min",
        # A scratch broker folder: no worker of ours picks up the retrains labels request.
        "CELERY_BROKER_DIR": str(workdir / "broker"),
        "MEDIA_ROOT": str(workdir / "media"),
    }
    db_recreate(env)
    django_setup(env)
    from django.db import connections

    pools = {}
    for size in sizes:
        pools[size] = pool_build(size=size, clients=max(concurrency), workdir=workdir)
        imp = pools[size]["import"]
        print(f"import {size:>8} rows: {imp['seconds']:6.2f} s  {imp['rows_per_s']:>7} rows/s"
              f"  (score update {imp['score_update_seconds']:.2f} s)", flush=True)
    connections.close_all()

    port = free_port()
    server = server_start(env, port, args.workers, args.threads)
    runs = []
    try:
        # Warm both workers (imports, connections) before anything is measured.
        run_load(port=port, slug=pools[sizes[0]]["slug"], tokens=pools[sizes[0]]["tokens"][:4],
                 duration=1.5, server_pid=server.pid)
        for size in sizes:
            pool = pools[size]
            checks = {"label_rows": 0, "accepted_submits": 0, "samples_with_two_labels": 0}
            for clients in concurrency:
                repeats = []
                for _ in range(args.repeats):
                    pool_reset(pool["project_id"])
                    result = run_load(port=port, slug=pool["slug"], tokens=pool["tokens"][:clients],
                                      duration=args.duration, server_pid=server.pid,
                                      think=args.think_ms / 1000)
                    result.pop("_handed")
                    rows, doubled = project_label_rows(pool["project_id"])
                    checks["label_rows"] += rows
                    checks["accepted_submits"] += result["accepted"]
                    checks["samples_with_two_labels"] += doubled
                    if rows != result["accepted"] or doubled:
                        print(f"CHECK FAILED: {rows} label rows, {result['accepted']} accepted "
                              f"submits, {doubled} samples labeled twice", flush=True)
                    repeats.append(result)
                row = _median_row(repeats)
                row["size"] = size
                runs.append(row)
                n, s = row["next_ms"], row["submit_ms"]
                print(f"{size:>8} samples {clients:>3} clients: next p50/p95/p99 "
                      f"{n['p50']:7.2f} {n['p95']:7.2f} {n['p99']:7.2f} ms | submit "
                      f"{s['p50']:7.2f} {s['p95']:7.2f} {s['p99']:7.2f} ms | "
                      f"{row['labels_per_s']:7.1f} labels/s | server "
                      f"{row['server_cpu_ms_per_label']} CPU-ms/label | errors {row['errors']}",
                      flush=True)
            connections.close_all()
            pool["checks"] = {**checks,
                              "label_rows_equal_accepted":
                                  checks["label_rows"] == checks["accepted_submits"],
                              "samples_handed_to_two_annotators": sum(
                                  r["samples_handed_to_two_annotators"]
                                  for r in runs if r["size"] == size)}
    finally:
        server_stop(server)
        connections.close_all()
        if not args.keep_db:
            db_drop()

    floors = {} if args.no_floor else floor_runs(
        env, concurrency=concurrency, duration=args.duration, workers=args.workers,
        threads=args.threads)
    figures = _targets(runs, pools, sizes)
    print(json.dumps(figures, indent=2))
    report = {
        "benchmark": "queue",
        "machine": {"cpus": os.cpu_count(), "note": "clients, server and PostgreSQL share the cores"},
        "server": {"granian_workers": args.workers, "threads": args.threads,
                   "settings": "config.settings.production"},
        "duration_s": args.duration, "repeats": args.repeats, "think_ms": args.think_ms,
        "imports": {size: pools[size]["import"] for size in sizes},
        "checks": {size: pools[size].get("checks") for size in sizes},
        "runs": runs,
        "floor": floors,
        "targets": figures,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def _median_row(repeats: list[dict]) -> dict:
    """The median of each figure over repeated runs (all of them kept under ``repeats``)."""
    if len(repeats) == 1:
        return repeats[0]
    row = dict(repeats[0])
    for key in ("next_ms", "submit_ms"):
        row[key] = {q: statistics.median(r[key][q] for r in repeats if r[key][q] is not None)
                    for q in ("p50", "p95", "p99")}
    for key in ("labels_per_s", "requests_per_s", "server_cpu_ms_per_label"):
        row[key] = statistics.median(r[key] for r in repeats if r[key] is not None)
    row["errors"] = {k: sum(r["errors"].get(k, 0) for r in repeats)
                     for r0 in repeats for k in r0["errors"]}
    row["samples_handed_to_two_annotators"] = sum(r["samples_handed_to_two_annotators"]
                                                  for r in repeats)
    row["repeats"] = [{"next_ms": r["next_ms"], "submit_ms": r["submit_ms"]} for r in repeats]
    return row


def _targets(runs: list[dict], pools: dict, sizes: list[int]) -> dict:
    by = {(r["size"], r["clients"]): r for r in runs}
    top, small, big = max(r["clients"] for r in runs), min(sizes), max(sizes)
    p99_big = by[(big, top)]["next_ms"]["p99"]
    p99_small = by[(small, top)]["next_ms"]["p99"]
    import_rate = min(pools[s]["import"]["rows_per_s"] for s in pools)
    return {
        f"next_p99_ms_{top}_clients_at_{big}": p99_big,
        "next_p99_target_ms": 25,
        f"next_p99_ratio_{big}_vs_{small}": round(p99_big / p99_small, 2),
        "ratio_target": 1.5,
        "import_rows_per_s_min": import_rate,
        "import_target_rows_per_s": 20000,
        "met": {
            "next_p99": p99_big <= 25,
            "flat_in_pool_size": p99_big <= 1.5 * p99_small,
            "import": import_rate >= 20000,
        },
    }


if __name__ == "__main__":
    main()
