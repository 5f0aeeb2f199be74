"""``celery`` for the integration tests, with test-only slowdowns so a test can kill a
worker in the middle of a task. Run as ``python -m tests.integration.worker_main <celery
arguments>``.

- ``TEST_SLOW_FIT_SECONDS`` (and ``TEST_SLOW_FIT_FROM_VERSION``, default 1): sleep that
  long before fitting versions numbered from there on, while the heartbeat goes on.
- ``TEST_SLOW_CHUNK_SECONDS``: sleep that long in each pool-scoring chunk.
- ``TEST_SCORE_CHUNK``: samples per pool-scoring chunk (so a small pool has several).
"""
from __future__ import annotations

import os
import sys
import time


def _patch() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    django.setup()
    from learning.services import cycle, scoring

    fit_delay = float(os.environ.get("TEST_SLOW_FIT_SECONDS") or 0)
    if fit_delay:
        from_version = int(os.environ.get("TEST_SLOW_FIT_FROM_VERSION") or 1)
        fit = cycle._fit

        def slow_fit(version):
            if version.number >= from_version:
                print(f"test: fitting v{version.number} slowly ({fit_delay}s)", flush=True)
                time.sleep(fit_delay)
            return fit(version)

        cycle._fit = slow_fit
    chunk_delay = float(os.environ.get("TEST_SLOW_CHUNK_SECONDS") or 0)
    if chunk_delay:
        score_chunk = scoring._score_chunk

        def slow_chunk(project, estimator, lo, hi, *, seed):
            print(f"test: scoring chunk {lo}-{hi} slowly ({chunk_delay}s)", flush=True)
            time.sleep(chunk_delay)
            return score_chunk(project, estimator, lo, hi, seed=seed)

        scoring._score_chunk = slow_chunk
    if os.environ.get("TEST_SCORE_CHUNK"):
        scoring.SCORE_CHUNK = int(os.environ["TEST_SCORE_CHUNK"])


def main() -> None:
    _patch()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    sys.exit(celery_main())


if __name__ == "__main__":
    main()
