"""Fixtures for integration tests on real services: PostgreSQL, Redis and a Celery worker process.

Locally a missing service skips the test (see ``require_service``); under ``CI=true`` it
fails, so CI can never pass without really running the loop.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from tests.conftest import require_service

REPO_ROOT = Path(__file__).resolve().parents[2]
# A Redis database of its own, flushed before each worker starts, so messages left over by
# other runs (or by the development stack on db 0) can never reach this worker.
INTEGRATION_REDIS_DB = 14
WORKER_READY_TIMEOUT = 60.0
TASK_NAME = "learning.tasks.model_version_train_task"


def _redis_url_for_tests(broker_url: str) -> str:
    parts = urlsplit(broker_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{INTEGRATION_REDIS_DB}", parts.query, ""))


@pytest.fixture(scope="session")
def integration_broker_url() -> str:
    """Check the real services are there and return the Redis URL the worker must use.

    Session-scoped and free of database fixtures, so a missing service skips (or fails,
    under CI) before any test database or server is set up.
    """
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        require_service(
            "PostgreSQL",
            f"the database is {connection.vendor}; set DATABASE_URL=postgres://... "
            "(e.g. postgres://postgres@127.0.0.1:5432/annotation)",
        )
    broker_url = str(settings.CELERY_BROKER_URL)
    if not broker_url.startswith(("redis://", "rediss://")):
        require_service(
            "Redis",
            f"CELERY_BROKER_URL is {broker_url!r}; set CELERY_BROKER_URL=redis://127.0.0.1:6379/0",
        )
    import redis

    url = _redis_url_for_tests(broker_url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        require_service("Redis", f"no answer to PING at {url}: {exc}")
    return url


def _database_url(settings_dict: dict) -> str:
    """A DATABASE_URL naming the database this test process really uses (test_<name>)."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{quote(settings_dict['NAME'], safe='')}"


def _reset_producer_pool(app) -> None:
    """Forget pooled broker connections so the next publish uses ``app.conf.broker_url``."""
    pool = getattr(app, "_pool", None)
    if pool is not None:
        pool.force_close_all()
        app._pool = None
    if getattr(app.amqp, "_producer_pool", None) is not None:
        app.amqp._producer_pool = None


@pytest.fixture
def celery_broker(integration_broker_url, monkeypatch):
    """Make this process publish tasks to Redis instead of running them eagerly.

    The test settings make Celery eager; for the duration of the test the app (shared by
    the live server's request threads) sends real messages to the integration Redis db.
    """
    import redis

    from config.celery import app

    client = redis.Redis.from_url(integration_broker_url)
    client.flushdb()
    client.close()

    # Celery reads CELERY_BROKER_URL (and _READ_/_WRITE_) from the environment before its
    # configuration, so the environment must name the integration db too.
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
        monkeypatch.setenv(name, integration_broker_url)
    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    app.conf.task_always_eager = False
    app.conf.broker_url = integration_broker_url
    _reset_producer_pool(app)
    assert app.conf.broker_write_url == integration_broker_url
    yield integration_broker_url
    _reset_producer_pool(app)
    for key, value in saved.items():
        app.conf[key] = value


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path
    hostname: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def received_tasks(self) -> int:
        return sum(
            1 for line in self.log().splitlines() if TASK_NAME in line and "received" in line
        )

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture
def celery_worker(
    integration_broker_url, live_server, transactional_db, _isolated_media, settings, celery_broker,
    tmp_path,
):
    """A real ``celery worker`` subprocess on the test database, media folder and Redis db.

    It depends on ``live_server``/``transactional_db`` so that it is stopped before the
    test database is flushed. Its log is printed at teardown (pytest shows it when the
    test fails).
    """
    from django.db import connection

    env = {
        **os.environ,
        # Not the test settings: they hard-code eager tasks. Local settings read all from env.
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DEBUG": "false",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "DB_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": integration_broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    hostname = f"integration-{os.getpid()}-{uuid.uuid4().hex[:8]}@%h"
    log_path = tmp_path / "celery-worker.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed in the finalizer below
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--pool=solo", "--loglevel=INFO", "--hostname", hostname,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = WorkerProcess(process=process, log_path=log_path, hostname=hostname)
    try:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while " ready." not in worker.log():
            if not worker.alive():
                pytest.fail(
                    f"celery worker exited with code {process.returncode} before it was ready:\n"
                    f"{worker.log()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"celery worker not ready after {WORKER_READY_TIMEOUT:.0f}s:\n{worker.log()}"
                )
            time.sleep(0.2)
        yield worker
    finally:
        if worker.alive():
            process.terminate()  # warm shutdown: finishes the task at hand, then exits
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log_file.close()
        print(f"----- celery worker log ({log_path}) -----\n{worker.log()}")
