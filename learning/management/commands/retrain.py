"""Queue a retrain of a project now, optionally waiting for the result."""
import time

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from learning.models import ModelVersion
from learning.services import model_version_request


class Command(BaseCommand):
    help = "Start a retrain now; with --wait, return when the version is ready or failed."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=1800)

    def handle(self, *args, slug, wait, timeout, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        version = model_version_request(project=project, trigger=ModelVersion.Trigger.MANUAL)
        self.stdout.write(f"version {version.number} queued")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        done = (ModelVersion.Status.READY, ModelVersion.Status.FAILED)
        while True:
            version.refresh_from_db()
            if version.status in done:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"version {version.number} still {version.status} after {timeout}s")
            time.sleep(0.5)
        if version.status == ModelVersion.Status.FAILED:
            raise CommandError(f"version {version.number} failed: {version.error}")
        self.stdout.write(
            f"version {version.number} ready: accuracy={version.accuracy} macro_f1={version.macro_f1} "
            f"trained_on={version.trained_on_label_count} served={version.is_served}"
        )
