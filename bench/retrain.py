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
batch, so its cost is what changes; issue 17), the sizes taking turns round by round.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotation_retrain \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 python bench/retrain.py [--rows 10000,100000]

Prints one table and writes bench/results/retrain.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds a queue.py of its own; keep it from shadowing the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.pools import (  # noqa: E402
    env_defaults, one_retrain, populate, setup_django, start_workers, stop_workers,
    worker_peaks_mb,
)

env_defaults("annotation_retrain")
ARTIFACTS = Path(os.environ.setdefault("ARTIFACT_ROOT", tempfile.mkdtemp(prefix="bench-retrain-")))


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
    setup_django()
    from annotation.models import Project

    cases = [("tabular", int(n)) for n in args.sizes.split(",") if n] + [
        ("text", int(n)) for n in args.text_sizes.split(",") if n]
    results = []
    for kind, n in cases:
        project, import_stats = populate(kind, n, args.labels)
        import_s = import_stats["import_s"]
        for n_workers in [int(w) for w in args.workers.split(",")]:
            procs = start_workers(n_workers)
            try:
                # The first retrain after the pool was built also fits the featurizer and
                # (text) featurizes every sample; reported apart, not in the median.
                # Each worker count starts from the state an import leaves: no fitted
                # featurizer, no feature cache.
                for cache in ("featurizers", "features"):
                    shutil.rmtree(ARTIFACTS / cache / str(project.pk), ignore_errors=True)
                first = one_retrain(project, args.timeout)
                # The batch sizes take turns, one retrain each per round, so a change of
                # the machine's load during the run falls on all of them alike.
                by_batch = {batch_size: [] for batch_size in batch_sizes}
                for _round in range(args.reps):
                    for batch_size in batch_sizes:
                        Project.objects.filter(pk=project.pk).update(batch_size=batch_size)
                        project.refresh_from_db()
                        by_batch[batch_size].append(one_retrain(project, args.timeout))
                peaks = worker_peaks_mb(procs)
            finally:
                stop_workers(procs)
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
                    "peak_rss_mb_per_worker": peaks, "load_avg": os.getloadavg(),
                }
                results.append(row)
                _write(results, args.reps)
                print(f"{kind:8s} {n:>8d} workers={n_workers} batch={batch_size:<6d} median "
                      f"{row['median_s']:7.2f} s  (fit {row['median_fit_s']:.2f} s, rescoring "
                      f"{row['median_score_s']:.2f} s, {row['chunks']} chunks)  runs "
                      f"{row['runs_s']}  first after import {row['first_after_import_s']:.2f} s  "
                      f"peak per worker {peaks} MB  load {os.getloadavg()[0]:.1f}",
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
