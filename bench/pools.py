"""Shared by the retrain benchmarks (retrain.py, scale.py): the database, the pool a user
would import, Celery workers, one retrain timed from the last label's request.

Nothing here runs on import; the caller sets ``DATABASE_URL``, ``CELERY_BROKER_URL`` and
``DJANGO_SETTINGS_MODULE`` first and calls ``setup_django``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.process_stats import peak_reset, tree_cpu_seconds, tree_peaks_kb

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 64
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega").split()
CSV_CHUNK_ROWS = 250_000  # the file is written in pieces: 10M x 64 floats would be 5 GB


def env_defaults(database: str) -> None:
    """The settings a benchmark uses unless the environment says otherwise."""
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{database}")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _fixed_cells(X) -> "np.ndarray":
    """Each value of ``X`` as ``,+d.dddd`` (8 bytes; clipped to +-9.9999), in one array:
    formatting 640M floats one at a time would take most of an hour."""
    import numpy as np

    v = np.clip(np.round(X * 10_000).astype(np.int64), -99_999, 99_999)
    a = np.abs(v)
    out = np.empty(X.shape + (8,), np.uint8)
    out[..., 0] = ord(",")
    out[..., 1] = np.where(v < 0, ord("-"), ord("+"))
    out[..., 2] = ord("0") + a // 10_000
    out[..., 3] = ord(".")
    for place, divisor in enumerate((1000, 100, 10, 1), start=4):
        out[..., place] = ord("0") + a // divisor % 10
    return out.reshape(X.shape[0], -1)


def write_csv(kind: str, n: int, n_labeled: int, path: Path, seed: int = 0) -> None:
    """Write the file a user would import: ``external_id``, ``label`` (the first
    ``n_labeled`` rows only) and 64 numeric columns (4 decimals), or a ``text`` column;
    in pieces of ``CSV_CHUNK_ROWS`` rows, so memory stays flat at any size."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    names = ["a" if label == 1 else "b" for label in y[:n_labeled]]
    with open(path, "wb") as out:
        if kind == "tabular":
            out.write(",".join(["external_id", "label",
                                *(f"x{i}" for i in range(N_FEATURES))]).encode() + b"\n")
        else:
            out.write(b"external_id,label,text\n")
        for start in range(0, n, CSV_CHUNK_ROWS):
            stop = min(n, start + CSV_CHUNK_ROWS)
            part = y[start:stop]
            if kind == "tabular":
                X = rng.normal(size=(stop - start, N_FEATURES))
                X[:, :8] += part[:, None] * 0.8
                tails = _fixed_cells(X)
            else:
                topics = (WORDS[:12], WORDS[12:])
                tails = [("," + " ".join(rng.choice(topics[1 - label], 8)) +
                          (" noise" if rng.random() < 0.2 else "")).encode() for label in part]
            out.write(b"".join(
                f"{i},{names[i] if i < n_labeled else ''}".encode() + bytes(tails[i - start])
                + b"\n" for i in range(start, stop)))


def populate(kind: str, n: int, n_labeled: int, seed: int = 0, *, slug_prefix: str = "bench",
             import_rows: int | None = None):
    """Create a project and import ``n`` samples (``n_labeled`` with labels) from a CSV
    file through the import service, as ``import_samples`` does. Returns the project and
    the import's figures: seconds, CPU seconds, rows/s and this process's peak memory
    during the import (VmHWM, reset before it).

    With ``import_rows`` below ``n``, only that many rows are imported (the figures are
    theirs) and the rest are added in SQL (``grow``): for a pool the import path would not
    fill in the time at hand on a loaded machine."""
    imported = n if import_rows is None else min(n, import_rows)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Project
    from annotation.services import import_job_create_from_path, import_job_run, project_create

    user, _ = get_user_model().objects.get_or_create(username="bench-retrain")
    slug = f"{slug_prefix}-{kind}-{n}"
    old = Project.objects.filter(slug=slug).first()
    if old is not None:  # the ORM's cascade walks a million rows one query at a time
        with connection.cursor() as cursor:
            for table in ("learning_labelsuspicion WHERE project_id = %s",
                          "learning_strategypick p USING annotation_sample s "
                          "WHERE p.sample_id = s.id AND s.project_id = %s",
                          "annotation_lease e USING annotation_sample s "
                          "WHERE e.sample_id = s.id AND s.project_id = %s",
                          "annotation_label l USING annotation_sample s WHERE l.sample_id = s.id "
                          "AND s.project_id = %s", "annotation_sample WHERE project_id = %s"):
                cursor.execute(f"DELETE FROM {table}", [old.pk])
        old.delete()
    # A batch size no import reaches, so the labels in the file queue no retrain while the
    # workers are down; the benchmark's batch size is set after the import.
    project = project_create(owner=user, slug=slug, name=slug, kind=kind, labels=["a", "b"],
                             batch_size=100_000, test_fraction=0.1, promotion="latest")
    path = Path(tempfile.mkdtemp(prefix="bench-retrain-csv-")) / f"{slug}.csv"
    try:
        t = time.perf_counter()
        write_csv(kind, imported, n_labeled, path, seed)
        write_s = time.perf_counter() - t
        size = path.stat().st_size
        peak_reset(os.getpid())
        with connection.cursor() as cursor:  # the server process doing the COPY (same machine)
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        server_cpu = tree_cpu_seconds(backend)
        t, cpu = time.perf_counter(), time.process_time()
        job = import_job_create_from_path(project=project, user=user, path=str(path))
        job = import_job_run(job_id=job.pk, path=str(path))
        import_s, import_cpu_s = time.perf_counter() - t, time.process_time() - cpu
        server_cpu_s = tree_cpu_seconds(backend) - server_cpu
        peak_kb = tree_peaks_kb(os.getpid()).get(os.getpid(), 0)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
    if job.status != job.Status.DONE or job.rows_ok != imported:
        raise RuntimeError(f"import {job.status}: {job.rows_ok} of {imported} rows; {job.report}")
    Project.objects.filter(pk=project.pk).update(batch_size=20)
    project.refresh_from_db()
    stats = {"import_s": round(import_s, 2), "import_cpu_s": round(import_cpu_s, 2),
             "server_cpu_s": round(server_cpu_s, 2), "imported_rows": imported,
             "rows_per_s": round(imported / import_s),
             "rows_per_cpu_s": round(imported / import_cpu_s),
             "csv_write_s": round(write_s, 1), "csv_bytes": size,
             "import_peak_mb": round(peak_kb / 1024)}
    if imported < n:
        stats["grown_rows"], stats["grow_s"] = n - imported, grow(project, n)
    print(f"{kind} {imported} of {n}: csv written in {write_s:.1f} s ({size / 1e9:.2f} GB), imported in "
          f"{import_s:.1f} s ({stats['rows_per_s']:,} rows/s; {stats['rows_per_cpu_s']:,} per "
          f"CPU second of this process, which used {import_cpu_s:.0f} CPU s, PostgreSQL "
          f"{server_cpu_s:.0f}), peak {stats['import_peak_mb']} MB", flush=True)
    return project, stats


def grow(project, n: int) -> float:
    """Add unlabeled samples to ``project`` in SQL until it has ``n``: copies of the values
    of its imported unlabeled rows, each with a fresh random key and split (test with the
    project's test fraction, as an import draws them). The table's secondary indexes are
    dropped meanwhile and built again after (an index build sorts once; millions of single
    inserts into six indexes took 3.5k rows/s here). Then ANALYZE, as a large import does.
    Returns the seconds it took."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(id) FROM annotation_sample WHERE project_id = %s",
                       [project.pk])
        have, last_imported = cursor.fetchone()
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                       "'annotation_sample' AND indexname <> 'annotation_sample_pkey'")
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        while have < n:
            cursor.execute(
                "INSERT INTO annotation_sample (external_id, text, values, image, thumbnail, "
                "split, origin, status, score, random_key, created_at, project_id, label_count, "
                "content_sha256) SELECT 'grown-' || (%s + row_number() OVER ()), '', t.values, "
                "'', '', CASE WHEN t.k < %s THEN 'test' ELSE 'pool' END, 'import', 'unlabeled', "
                "0, t.k, now(), %s, 0, '' FROM (SELECT s.values, random() AS k "
                "FROM annotation_sample s WHERE s.project_id = %s AND s.id <= %s "
                "AND s.status = 'unlabeled' ORDER BY s.id LIMIT %s) t",
                [have, project.test_fraction, project.pk, project.pk, last_imported, n - have])
            have += cursor.rowcount
            print(f"  grown to {have:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for _name, definition in indexes:
            cursor.execute(definition)
        cursor.execute("ANALYZE annotation_sample")
    return round(time.perf_counter() - started, 1)


def start_workers(n: int, *, envs: list[dict] | None = None, name: str = "bench-retrain",
                  log_dir: Path | None = None,
                  ready_timeout: float = 120) -> list[subprocess.Popen]:
    """Start ``n`` Celery workers (one prefork process each, every queue) and wait until
    each says it is ready. ``envs[i]`` is added to worker i's environment."""
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-workers-"))
    procs, logs = [], []
    for i in range(n):
        log = log_dir / f"{name}-{i}.log"
        logs.append(log)
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "1",
                 "-P", "prefork", "-n", f"{name}-{i}@%h", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-l", "info"],
                cwd=ROOT, env={**os.environ, **((envs or [{}] * n)[i])}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            ))
    deadline = time.monotonic() + ready_timeout
    for proc, log in zip(procs, logs):
        while b" ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_workers(procs)
                raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    return procs


def worker_peaks_mb(procs: list[subprocess.Popen]) -> list[float]:
    """Each worker's peak memory: the largest VmHWM among its processes (the Celery main
    process and its pool child, where tasks run), in MB."""
    return [round(max(tree_peaks_kb(proc.pid).values() or [0]) / 1024, 1) for proc in procs]


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def one_retrain(project, timeout: float) -> dict:
    """Request a retrain the way the last label of a batch does; wait until the new version
    is served and the whole pool rescored. ``served_s``: request to served."""
    from learning.models import ModelVersion
    from learning.services import model_version_request

    started = time.perf_counter()
    served_s = None
    version = model_version_request(project=project, trigger=ModelVersion.Trigger.BATCH)
    while True:
        version.refresh_from_db()
        if version.status == ModelVersion.Status.FAILED:
            raise RuntimeError(f"v{version.number} failed: {version.error}")
        if served_s is None and version.is_served:
            served_s = time.perf_counter() - started
        if version.is_served and version.scored_sample_count is not None:
            break
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"v{version.number} not done after {timeout}s ({version.status})")
        time.sleep(0.02)
    total = time.perf_counter() - started
    return {"total_s": total, "served_s": served_s, "fit_s": version.fit_seconds,
            "score_s": version.score_seconds, "chunks": version.score_chunks_total,
            "scored": version.scored_sample_count, "error": version.error}
