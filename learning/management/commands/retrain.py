"""Queue a retrain of a project now, optionally waiting for the result."""
import time

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from core.jobs import tasks_run_inline, workers_answering
from learning.models import ModelVersion
from learning.services import model_version_request

# How often --wait asks whether any worker is there.
PING_EVERY_SECONDS = 5.0
PING_TIMEOUT_SECONDS = 2.0


class Command(BaseCommand):
    help = ("Start a retrain now; with --wait, return when the version is ready or failed, "
            "or fail when no Celery worker answers for --worker-wait seconds.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=1800)
        parser.add_argument(
            "--worker-wait", type=float, default=30,
            help="with --wait, give up when no worker answered a ping for this many seconds",
        )

    def handle(self, *args, slug, wait, timeout, worker_wait, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        version = model_version_request(project=project, trigger=ModelVersion.Trigger.MANUAL)
        self.stdout.write(f"version {version.number} queued")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        done = (ModelVersion.Status.READY, ModelVersion.Status.FAILED)
        check_workers = not tasks_run_inline()
        silent_since: float | None = None
        next_ping = time.monotonic()
        while True:
            version.refresh_from_db()
            if version.status in done:
                break
            now = time.monotonic()
            if now > deadline:
                raise CommandError(f"version {version.number} still {version.status} after {timeout}s")
            if check_workers and now >= next_ping:
                silent_since = self._check_workers(version, silent_since, worker_wait)
                next_ping = time.monotonic() + PING_EVERY_SECONDS
            time.sleep(0.5)
        if version.status == ModelVersion.Status.FAILED:
            raise CommandError(f"version {version.number} failed: {version.error}")
        self.stdout.write(
            f"version {version.number} ready: accuracy={version.accuracy} macro_f1={version.macro_f1} "
            f"trained_on={version.trained_on_label_count} served={version.is_served}"
        )

    def _check_workers(self, version: ModelVersion, silent_since: float | None,
                       worker_wait: float) -> float | None:
        """Ping the workers; return since when none answered (None: one did). Raise once
        none answered for ``worker_wait`` seconds."""
        answered = workers_answering(timeout=PING_TIMEOUT_SECONDS)
        if answered:
            return None
        why = ("the broker cannot be reached" if answered is None
               else "no Celery worker answered a ping")
        now = time.monotonic()
        if silent_since is None:
            self.stderr.write(f"{why}; version {version.number} is {version.status}. "
                              f"Waiting up to {worker_wait:.0f}s for a worker...")
            silent_since = now
        if now - silent_since >= worker_wait:
            raise CommandError(
                f"{why} for {worker_wait:.0f}s: version {version.number} stays {version.status} "
                "and trains when a worker runs (start one with `make worker`); not waiting longer"
            )
        return silent_since
