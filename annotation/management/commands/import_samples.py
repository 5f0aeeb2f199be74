"""Import a CSV, JSONL or .zip file into a project, with a progress bar."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from annotation.models import ImportJob, Project
from annotation.services import import_job_create_from_path, import_job_run


class Command(BaseCommand):
    help = ("Import samples: a .csv or .jsonl file (text and tabular projects) or a .zip of "
            "images. The file goes in whole or not at all; bad rows are listed.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("file")
        parser.add_argument("--user", default=None,
                            help="Who imports (and gives existing labels); default: the owner.")
        parser.add_argument("--text-column", default=None, help="Default: text")
        parser.add_argument("--id-column", default=None, help="Default: external_id")
        parser.add_argument("--label-column", default=None, help="Default: label")
        parser.add_argument("--labels-from-folders", action="store_true",
                            help="Images: the folder an image is in names its label.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, slug, file, user, no_progress, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        importer = project.owner
        if user:
            importer = get_user_model().objects.filter(username=user).first()
            if importer is None:
                raise CommandError(f"no user {user!r}")
        job_options = {key: options[key] for key in
                       ("text_column", "id_column", "label_column", "labels_from_folders")}
        try:
            job = import_job_create_from_path(project=project, user=importer, path=file,
                                              options=job_options)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        bar = None if no_progress else self._bar(job)
        try:
            job = import_job_run(job_id=job.pk, path=file, progress=bar and bar.progress)
        finally:
            if bar is not None:
                bar.close()
        self._report(job)

    def _bar(self, job: ImportJob) -> "_Bar":
        return _Bar(job, self.stderr)

    def _report(self, job: ImportJob) -> None:
        report = job.report or {}
        for error in report.get("errors", []):
            where = (f"entry {error['entry']}" if "entry" in error
                     else f"row {error['row']} (line {error.get('line')})")
            self.stderr.write(f"  {where}: {error['error']}")
        if report.get("truncated"):
            self.stderr.write(f"  … and {job.rows_bad - len(report['errors'])} more bad rows")
        if job.status != ImportJob.Status.DONE:
            raise CommandError(f"import {job.pk}: {report.get('message', job.status)}")
        self.stdout.write(f"import {job.pk}: {report.get('message')}")


class _Bar:
    """A tqdm bar over bytes read (CSV, JSONL) or entries (zip)."""

    def __init__(self, job: ImportJob, stream) -> None:
        from tqdm import tqdm

        by_rows = job.format == ImportJob.Format.ZIP
        self.by_rows = by_rows
        self.tqdm = tqdm(total=None if by_rows else job.bytes_total, unit="row" if by_rows else "B",
                         unit_scale=True, unit_divisor=1000 if by_rows else 1024,
                         desc=job.original_name[:30], file=stream._out, dynamic_ncols=True)

    def progress(self, job: ImportJob) -> None:
        if self.by_rows:
            self.tqdm.total = job.rows_total
            value = job.rows_done
        else:
            value = job.bytes_done
        self.tqdm.update(max(value - self.tqdm.n, 0))
        self.tqdm.set_postfix(rows=job.rows_done, bad=job.rows_bad, refresh=False)

    def close(self) -> None:
        self.tqdm.close()
