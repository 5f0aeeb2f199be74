"""Rebuild the monitoring rollups from the raw prediction logs (backfill or repair)."""
import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from serving.rollup_rebuild import rollups_rebuild


def _since(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--since: not an ISO date or time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = ("Rebuild the per-minute and per-hour monitoring rollups from the raw prediction "
            "logs, in SQL, one transaction per batch of minutes; idempotent. Minutes before "
            "the raw logs' retention horizon are left alone.")

    def add_arguments(self, parser):
        parser.add_argument("--project", help="a project's slug (default: every project)")
        parser.add_argument("--since", type=_since,
                            help="ISO date or time, UTC unless it says (default: the oldest raw log)")
        parser.add_argument("--batch-hours", type=float, default=6.0,
                            help="hours of logs per transaction (default 6)")

    def handle(self, *args, project, since, batch_hours, verbosity, **options):
        chosen = None
        if project is not None:
            chosen = Project.objects.filter(slug=project).first()
            if chosen is None:
                raise CommandError(f"no project {project!r}")
        if batch_hours <= 0:
            raise CommandError("--batch-hours must be above 0")

        def progress(slug, start, end):
            if verbosity > 1:
                self.stderr.write(f"{slug}: {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} rebuilt")

        report = rollups_rebuild(project=chosen, since=since,
                                 batch=dt.timedelta(hours=batch_hours), progress=progress)
        self.stdout.write(f"{report.projects} project(s), {report.batches} batch(es): "
                          f"{report.predictions} prediction(s) in {report.minutes} "
                          f"minute rollup row(s)")
