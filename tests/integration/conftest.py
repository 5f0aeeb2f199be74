"""Fixtures for integration tests on real services: PostgreSQL, Redis and a Celery worker process.

Locally a missing service skips the test (see ``require_service``); under ``CI=true`` it
fails, so CI can never pass without really running the loop.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
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


def _integration_redis_db() -> int:
    """A Redis database of this test process's own, flushed before each worker starts, so
    messages left over by other runs (or by the development stack on db 0) can never reach
    its workers. Under pytest-xdist (``make test`` runs this pass on two processes) process
    ``gwN`` takes ``INTEGRATION_REDIS_DB - N``; two suites running at once on one machine
    each set INTEGRATION_REDIS_DB so that their ranges do not meet."""
    base = int(os.environ.get("INTEGRATION_REDIS_DB", "14"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    db = base - (int(worker[2:]) if worker.startswith("gw") else 0)
    if not 1 <= db <= 15:
        raise RuntimeError(f"Redis database {db} for test process {worker or 'main'}: set "
                           "INTEGRATION_REDIS_DB so that it minus each xdist worker's index is "
                           "within 1-15 (db 0 is the development stack's)")
    return db


INTEGRATION_REDIS_DB = _integration_redis_db()
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
    """Forget pooled broker connections so the next publish uses ``app.conf.broker_url``.

    kombu keeps producer pools per connection URL in a process-wide registry: reset it
    too, or a later test on the same URL would get the pool closed here."""
    from kombu import pools

    pools.reset()
    pool = getattr(app, "_pool", None)
    if pool is not None:
        pool.force_close_all()
        app._pool = None
    if getattr(app.amqp, "_producer_pool", None) is not None:
        app.amqp._producer_pool = None


@contextlib.contextmanager
def publishing_to(broker_url: str):
    """Make this process publish tasks to ``broker_url`` instead of running them eagerly.

    The test settings make Celery eager; meanwhile the app (shared by the live server's
    request threads) sends real messages to that broker.
    """
    from config.celery import app

    # Celery reads CELERY_BROKER_URL (and _READ_/_WRITE_) from the environment before its
    # configuration, so the environment must name the same broker.
    names = ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    for name in names:
        os.environ[name] = broker_url
    app.conf.task_always_eager = False
    app.conf.broker_url = broker_url
    _reset_producer_pool(app)
    assert app.conf.broker_write_url == broker_url
    try:
        yield broker_url
    finally:
        _reset_producer_pool(app)
        for key, value in saved.items():
            app.conf[key] = value
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def celery_broker(integration_broker_url):
    """This process publishes to the integration Redis db (flushed first)."""
    import redis

    client = redis.Redis.from_url(integration_broker_url)
    client.flushdb()
    client.close()
    with publishing_to(integration_broker_url):
        yield integration_broker_url


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

    def kill(self) -> None:
        """SIGKILL the worker: no warm shutdown, no acknowledgement, no cleanup."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()  # warm shutdown: finishes the task at hand, then exits
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class WorkerFactory:
    """Start real ``celery worker`` subprocesses on the test database, media and a broker.

    ``start(env=..., broker_url=...)`` may be called several times in a test (a worker
    killed and started again); every worker is stopped and its log printed at teardown.
    Workers run through ``tests/integration/worker_main.py``, which can slow training or
    scoring (``TEST_SLOW_*`` variables) so that a test can kill a worker in the middle.
    """

    def __init__(self, base_env: dict, tmp_path: Path, broker_url: str) -> None:
        self.base_env = base_env
        self.tmp_path = tmp_path
        self.broker_url = broker_url
        self.workers: list[WorkerProcess] = []
        self.log_files: list = []

    def start(self, *, env: dict | None = None, broker_url: str | None = None) -> WorkerProcess:
        n = len(self.workers) + 1
        hostname = f"integration-{os.getpid()}-{uuid.uuid4().hex[:8]}-{n}@%h"
        log_path = self.tmp_path / f"celery-worker-{n}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.log_files.append(log_file)
        process = subprocess.Popen(
            [
                sys.executable, "-m", "tests.integration.worker_main", "-A", "config", "worker",
                "--pool=solo", "--loglevel=INFO", "--hostname", hostname,
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=REPO_ROOT,
            env={**self.base_env, "CELERY_BROKER_URL": broker_url or self.broker_url,
                 **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = WorkerProcess(process=process, log_path=log_path, hostname=hostname)
        self.workers.append(worker)
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
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for log_file in self.log_files:
            log_file.close()
        for worker in self.workers:
            print(f"----- celery worker log ({worker.log_path}) -----\n{worker.log()}")


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3 server for the tests: moto in server mode (a subprocess), with one bucket.

    Yields the settings a machine needs to use it (``STORAGE_URL``'s bucket, endpoint,
    region, credentials); moto accepts any credentials.
    """
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError as exc:
        require_service("S3 (moto server)", f"moto[server] and boto3 are not installed: {exc}")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    config = {"AWS_S3_ENDPOINT_URL": endpoint, "AWS_S3_REGION_NAME": "us-east-1",
              "AWS_ACCESS_KEY_ID": "integration", "AWS_SECRET_ACCESS_KEY": "integration"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="integration", aws_secret_access_key="integration")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="integration")
            break
        except Exception:  # noqa: BLE001 (not listening yet)
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the moto S3 server did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
    try:
        yield {"bucket": "integration", "client": client, **config}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def storage(request, settings, tmp_path):
    """Where files live for this test: ``local`` (one shared disk, the default) or ``s3``.

    With ``s3`` (parametrize indirectly), this process (the web) and the workers keep files
    in a bucket of a moto server, under a prefix of this test's own, and the workers get
    local directories of their own: anything that still needs a shared disk fails.
    Returns the environment the workers need on top of the defaults.
    """
    mode = getattr(request, "param", "local")
    if mode == "local":
        return {}
    from core.storage import storages_from_url

    server = request.getfixturevalue("s3_server")
    url = f"s3://{server['bucket']}/{uuid.uuid4().hex[:12]}"
    settings.STORAGE_URL = url
    settings.STORAGES = {
        **settings.STORAGES,
        **storages_from_url(url, endpoint_url=server["AWS_S3_ENDPOINT_URL"],
                            region_name=server["AWS_S3_REGION_NAME"],
                            access_key=server["AWS_ACCESS_KEY_ID"],
                            secret_key=server["AWS_SECRET_ACCESS_KEY"]),
    }
    worker_disk = tmp_path / "worker-machine"
    return {
        "STORAGE_URL": url,
        **{key: value for key, value in server.items() if key.startswith("AWS_")},
        "MEDIA_ROOT": str(worker_disk / "media"),
        "ARTIFACT_ROOT": str(worker_disk / "artifacts"),
        "LOCAL_CACHE_DIR": str(worker_disk / "cache"),
    }


@pytest.fixture
def celery_workers(integration_broker_url, live_server, transactional_db, _isolated_media,
                   settings, tmp_path, storage):
    """A ``WorkerFactory`` on the integration Redis db.

    It depends on ``live_server``/``transactional_db`` so that its workers are stopped
    before the test database is flushed.
    """
    from django.db import connection

    base_env = {
        **os.environ,
        # Not the test settings: they hard-code eager tasks. Local settings read all from env.
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DEBUG": "false",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "DB_CONN_MAX_AGE": "0",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "LOCAL_CACHE_DIR": str(settings.LOCAL_CACHE_DIR),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **storage,
    }
    factory = WorkerFactory(base_env, tmp_path, integration_broker_url)
    try:
        yield factory
    finally:
        factory.close()


class BeatProcess:
    """A real ``celery -A config beat`` (no scheduler flag: the settings name
    django-celery-beat's DatabaseScheduler) on the test database and broker."""

    def __init__(self, env: dict, log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO"],
            cwd=REPO_ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log_file.close()
        print(f"----- celery beat log ({self.log_path}) -----\n{self.log()}")


@pytest.fixture
def celery_beat(celery_workers, celery_broker):
    """``start(env=...)`` starts one beat with the workers' environment (and ``env`` on top,
    e.g. ``RULES_EVALUATE_SECONDS``); stopped before the workers and the database."""
    beats: list[BeatProcess] = []

    def start(env: dict | None = None) -> BeatProcess:
        beat = BeatProcess({**celery_workers.base_env, "CELERY_BROKER_URL": celery_broker,
                            **(env or {})}, celery_workers.tmp_path / "celery-beat.log")
        beats.append(beat)
        return beat

    try:
        yield start
    finally:
        for beat in beats:
            beat.stop()


@pytest.fixture
def celery_worker(celery_workers, celery_broker):
    """One real worker on the integration Redis db; this process publishes there too."""
    return celery_workers.start()


class RedisServer:
    """A ``redis-server`` of the test's own, on a free port, to stop and start again: the
    machine's shared Redis must never be stopped. No persistence, like a broker that
    restarts empty (its queued messages lost)."""

    def __init__(self, tmp_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_path = tmp_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            require_service("redis-server", "the redis-server binary is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
