"""Retrain cycle at scale: last label of a batch -> new version served, whole pool rescored.

For pools of 10k, 100k and 1M tabular samples (64 numeric features, logistic regression)
and a 10k text pool, with 1 and 2 Celery worker processes (concurrency 1 each) over Redis,
on PostgreSQL. Each figure is the median of ``--reps`` retrains; a retrain is requested the
way the last label of a batch requests it (``model_version_request``) and is done when the
new version is served (promotion policy "latest") and every chunk of the pool is rescored.

Pools are built as users build them: a CSV file (``--labels`` rows of it labeled, 2,000 by
default) imported through the import service (``import_job_create_from_path`` and
``import_job_run``, what ``import_samples`` runs), batch size 20. The first retrain after
the import fills the feature cache from ``Sample.values``, fits the featurizer (kept until
samples are added) and, for text, featurizes every text once; it is printed apart as
"first after import" (for each worker count, from an emptied cache). The medians are the
retrains after it: every batch of labels but the first. ``--batch-sizes 10,1000,100000``
times the same retrain at several project batch sizes (the queue's head is ranked for one
batch, so its cost is what changes; issue 17).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotation_retrain \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 python bench/retrain.py [--rows 10000,100000]

Prints one table and writes bench/results/retrain.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds a queue.py of its own; keep it from shadowing the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/annotation_retrain")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/12")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
ARTIFACTS = Path(os.environ.setdefault("ARTIFACT_ROOT", tempfile.mkdtemp(prefix="bench-retrain-")))

N_FEATURES = 64
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega").split()


def _ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _setup_django() -> None:
    _ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _write_csv(kind: str, n: int, n_labeled: int, path: Path, seed: int = 0) -> None:
    """Write the file a user would import: ``external_id``, ``label`` (the first
    ``n_labeled`` rows only) and 64 numeric columns, or a ``text`` column."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({"external_id": np.arange(n)})
    frame["label"] = np.where(y == 1, "a", "b")
    frame.loc[n_labeled:, "label"] = ""
    if kind == "tabular":
        X = rng.normal(size=(n, N_FEATURES))
        X[:, :8] += y[:, None] * 0.8
        features = pd.DataFrame(X, columns=[f"x{i}" for i in range(N_FEATURES)])
        frame = pd.concat([frame, features], axis=1)
    else:
        topics = (WORDS[:12], WORDS[12:])
        frame["text"] = [" ".join(rng.choice(topics[1 - label], 8)) +
                         (" noise" if rng.random() < 0.2 else "") for label in y]
    frame.to_csv(path, index=False, float_format="%.4f")


def _populate(kind: str, n: int, n_labeled: int, seed: int = 0):
    """Create a project and import ``n`` samples (``n_labeled`` with labels) from a CSV
    file through the import service, as ``import_samples`` does."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Project
    from annotation.services import import_job_create_from_path, import_job_run, project_create

    user, _ = get_user_model().objects.get_or_create(username="bench-retrain")
    slug = f"bench-{kind}-{n}"
    old = Project.objects.filter(slug=slug).first()
    if old is not None:  # the ORM's cascade walks a million rows one query at a time
        with connection.cursor() as cursor:
            for table in ("annotation_label l USING annotation_sample s WHERE l.sample_id = s.id "
                          "AND s.project_id = %s", "annotation_sample WHERE project_id = %s"):
                cursor.execute(f"DELETE FROM {table}", [old.pk])
        old.delete()
    # A batch size no import reaches, so the labels in the file queue no retrain while the
    # workers are down; the benchmark's batch size is set after the import.
    project = project_create(owner=user, slug=slug, name=slug, kind=kind, labels=["a", "b"],
                             batch_size=100_000, test_fraction=0.1, promotion="latest")
    path = Path(tempfile.mkdtemp(prefix="bench-retrain-csv-")) / f"{slug}.csv"
    t = time.perf_counter()
    _write_csv(kind, n, n_labeled, path, seed)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    job = import_job_create_from_path(project=project, user=user, path=str(path))
    job = import_job_run(job_id=job.pk, path=str(path))
    import_s = time.perf_counter() - t
    path.unlink()
    if job.status != job.Status.DONE or job.rows_ok != n:
        raise RuntimeError(f"import {job.status}: {job.rows_ok} of {n} rows; {job.report}")
    Project.objects.filter(pk=project.pk).update(batch_size=20)
    project.refresh_from_db()
    print(f"{kind} {n}: csv written in {write_s:.1f} s, imported in {import_s:.1f} s "
          f"({n / import_s:,.0f} rows/s)", flush=True)
    return project, import_s


def _start_workers(n: int) -> list[subprocess.Popen]:
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
    procs = []
    for i in range(n):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "1", "-P", "prefork",
             "-n", f"bench-retrain-{i}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "warning"],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        ))
    time.sleep(6)  # workers import Django and connect
    return procs


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _one_retrain(project, timeout: float) -> dict:
    from learning.models import ModelVersion
    from learning.services import model_version_request

    started = time.perf_counter()
    version = model_version_request(project=project, trigger=ModelVersion.Trigger.BATCH)
    while True:
        version.refresh_from_db()
        if version.status == ModelVersion.Status.FAILED:
            raise RuntimeError(f"v{version.number} failed: {version.error}")
        if version.is_served and version.scored_sample_count is not None:
            break
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"v{version.number} not done after {timeout}s ({version.status})")
        time.sleep(0.02)
    total = time.perf_counter() - started
    return {"total_s": total, "fit_s": version.fit_seconds, "score_s": version.score_seconds,
            "chunks": version.score_chunks_total, "scored": version.scored_sample_count,
            "error": version.error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", "--rows", default="10000,100000,1000000",
                        help="tabular pool sizes (rows imported)")
    parser.add_argument("--labels", type=int, default=2000, help="labeled rows in each file")
    parser.add_argument("--text-sizes", default="10000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--batch-sizes", default="20",
                        help="project batch sizes to time (the ranking of the queue's head "
                             "grows with it; issue 17 asks for 10,1000,100000)")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    _setup_django()
    from annotation.models import Project

    cases = [("tabular", int(n)) for n in args.sizes.split(",") if n] + [
        ("text", int(n)) for n in args.text_sizes.split(",") if n]
    results = []
    for kind, n in cases:
        project, import_s = _populate(kind, n, args.labels)
        for n_workers in [int(w) for w in args.workers.split(",")]:
            procs = _start_workers(n_workers)
            try:
                # The first retrain after the pool was built also fits the featurizer and
                # (text) featurizes every sample; reported apart, not in the median.
                # Each worker count starts from the state an import leaves: no fitted
                # featurizer, no feature cache.
                for cache in ("featurizers", "features"):
                    shutil.rmtree(ARTIFACTS / cache / str(project.pk), ignore_errors=True)
                first = _one_retrain(project, args.timeout)
                by_batch = {}
                for batch_size in batch_sizes:
                    Project.objects.filter(pk=project.pk).update(batch_size=batch_size)
                    project.refresh_from_db()
                    by_batch[batch_size] = [_one_retrain(project, args.timeout)
                                            for _ in range(args.reps)]
            finally:
                _stop_workers(procs)
            for batch_size, runs in by_batch.items():
                row = {
                    "kind": kind, "pool": n, "workers": n_workers, "batch_size": batch_size,
                    "import_s": round(import_s, 2), "labels": args.labels,
                    "median_s": round(statistics.median(r["total_s"] for r in runs), 3),
                    "median_fit_s": round(statistics.median(r["fit_s"] for r in runs), 3),
                    "median_score_s": round(statistics.median(r["score_s"] for r in runs), 3),
                    "runs_s": [round(r["total_s"], 3) for r in runs],
                    "first_after_import_s": round(first["total_s"], 3),
                    "chunks": runs[-1]["chunks"], "scored": runs[-1]["scored"],
                    "errors": [r["error"] for r in runs if r["error"]],
                }
                results.append(row)
                _write(results, args.reps)
                print(f"{kind:8s} {n:>8d} workers={n_workers} batch={batch_size:<6d} median "
                      f"{row['median_s']:7.2f} s  (fit {row['median_fit_s']:.2f} s, rescoring "
                      f"{row['median_score_s']:.2f} s, {row['chunks']} chunks)  runs "
                      f"{row['runs_s']}  first after import {row['first_after_import_s']:.2f} s",
                      flush=True)
    print(f"wrote {_write(results, args.reps)}")


def _write(results: list[dict], reps: int) -> Path:
    """Write the rows so far: a long run that is stopped still leaves its figures."""
    out = ROOT / "bench" / "results" / "retrain.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": "last label of a batch -> new version served with the whole pool rescored",
        "machine_cores": os.cpu_count(), "reps": reps, "results": results,
    }, indent=2))
    return out


if __name__ == "__main__":
    main()
