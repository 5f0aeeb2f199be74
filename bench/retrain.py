"""Retrain cycle at scale: last label of a batch -> new version served, whole pool rescored.

For pools of 10k, 100k and 1M tabular samples (64 numeric features, logistic regression)
and a 10k text pool, with 1 and 2 Celery worker processes (concurrency 1 each) over Redis,
on PostgreSQL. Each figure is the median of ``--reps`` retrains; a retrain is requested the
way the last label of a batch requests it (``model_version_request``) and is done when the
new version is served (promotion policy "latest") and every chunk of the pool is rescored.

Pools are written with COPY. Tabular feature rows go straight into the project's feature
cache (what the first retrain after an import builds from ``Sample.values``). The first
retrain after the pool is built fits the featurizer (kept until samples are added) and,
for text, featurizes every text once (rows kept too); it is printed apart as "first after
import". The medians are the retrains after it: every batch of labels but the first.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotation_retrain \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 python bench/retrain.py [--sizes 10000,100000]

Prints one table and writes bench/results/retrain.json.
"""
from __future__ import annotations

import argparse
import io
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
N_LABELED = 400
N_TEST = 200
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


def _populate(kind: str, n: int, seed: int = 0):
    """Create a project with ``n`` samples by COPY; label the first pool and test rows."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import LabelCounts, Project, Sample
    from learning import feature_cache
    from learning.model_input import _cache_dir

    rng = np.random.default_rng(seed)
    user, _ = get_user_model().objects.get_or_create(username="bench-retrain")
    slug = f"bench-{kind}-{n}"
    old = Project.objects.filter(slug=slug).first()
    if old is not None:  # the ORM's cascade walks a million rows one query at a time
        with connection.cursor() as cursor:
            for table in ("annotation_label l USING annotation_sample s WHERE l.sample_id = s.id "
                          "AND s.project_id = %s", "annotation_sample WHERE project_id = %s"):
                cursor.execute(f"DELETE FROM {table}", [old.pk])
        old.delete()
    columns = [f"x{i}" for i in range(N_FEATURES)] if kind == "tabular" else []
    project = Project.objects.create(
        name=slug, slug=slug, kind=kind, labels=["a", "b"], batch_size=20, owner=user,
        columns=columns, promotion=Project.Promotion.LATEST, test_fraction=0.0,
    )
    LabelCounts.objects.create(project=project)
    y = rng.integers(0, 2, n)
    buf = io.StringIO()
    for i in range(n):
        split = "test" if i < N_TEST else "pool"
        status = "labeled" if i < N_TEST + N_LABELED else "unlabeled"
        text = ""
        if kind == "text":
            words = rng.choice(WORDS[:12] if y[i] else WORDS[12:], 8)
            text = " ".join(words) + (" noise" if rng.random() < 0.2 else "")
        buf.write(f"{project.pk}\t{i}\t{text}\t\\N\t\t\t{split}\timport\t{status}\t0\t"
                  f"{rng.random()!r}\t{1 if status == 'labeled' else 0}\t2026-01-01 00:00:00+00\n")
    buf.seek(0)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(
            f"COPY {Sample._meta.db_table} (project_id, external_id, text, values, image, "
            "thumbnail, split, origin, status, score, random_key, label_count, created_at) "
            "FROM STDIN") as copy:
            copy.write(buf.getvalue())
        cursor.execute(
            "INSERT INTO annotation_label (sample_id, annotator_id, value, created_at, "
            "is_correction) SELECT s.id, %s, CASE WHEN (s.external_id::int %% 2) = 1 "
            "THEN 'a' ELSE 'b' END, now(), false FROM annotation_sample s "
            "WHERE s.project_id = %s AND s.status = 'labeled'", [user.pk, project.pk])
    ids = np.asarray(Sample.objects.filter(project=project).order_by("pk")
                     .values_list("pk", flat=True), dtype=np.int64)
    ext = np.asarray(Sample.objects.filter(project=project).order_by("pk")
                     .values_list("external_id", flat=True), dtype=np.int64)
    if kind == "text":
        # Labels follow the text's vocabulary: external id parity picked the label above.
        pass
    else:
        label = (ext % 2 == 1).astype(float)
        X = rng.normal(size=(n, N_FEATURES))
        X[:, :8] += label[:, None] * 0.8
        feature_cache.append(_cache_dir(project), ids, X)
    if kind == "text":  # make texts agree with the label the INSERT gave (parity)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE annotation_sample SET text = CASE WHEN (external_id::int %% 2) = 1 "
                "THEN 'alpha beta gamma ' || text ELSE 'omega psi chi ' || text END "
                "WHERE project_id = %s", [project.pk])
    with connection.cursor() as cursor:  # fresh planner statistics, as autovacuum would
        cursor.execute("ANALYZE annotation_sample; ANALYZE annotation_label")
    from annotation.services import label_counts_rebuild

    label_counts_rebuild(project_id=project.pk)
    return project


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
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--text-sizes", default="10000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    _setup_django()
    cases = [("tabular", int(n)) for n in args.sizes.split(",") if n] + [
        ("text", int(n)) for n in args.text_sizes.split(",") if n]
    results = []
    for kind, n in cases:
        t = time.perf_counter()
        project = _populate(kind, n)
        populate_s = time.perf_counter() - t
        for n_workers in [int(w) for w in args.workers.split(",")]:
            procs = _start_workers(n_workers)
            try:
                # The first retrain after the pool was built also fits the featurizer and
                # (text) featurizes every sample; reported apart, not in the median.
                shutil.rmtree(ARTIFACTS / "featurizers" / str(project.pk), ignore_errors=True)
                first = _one_retrain(project, args.timeout)
                runs = [_one_retrain(project, args.timeout) for _ in range(args.reps)]
            finally:
                _stop_workers(procs)
            row = {
                "kind": kind, "pool": n, "workers": n_workers, "populate_s": round(populate_s, 2),
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
            print(f"{kind:8s} {n:>8d} workers={n_workers}  median {row['median_s']:7.2f} s  "
                  f"(fit {row['median_fit_s']:.2f} s, rescoring {row['median_score_s']:.2f} s, "
                  f"{row['chunks']} chunks)  runs {row['runs_s']}  first after import "
                  f"{row['first_after_import_s']:.2f} s", flush=True)
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
