"""Export a project's labels as CSV or JSONL, streamed to a file or standard output."""
from django.core.management.base import BaseCommand, CommandError

from annotation.exports import FORMATS
from annotation.models import Project
from annotation.selectors import label_export_chunks


class Command(BaseCommand):
    help = "Export labels: current ones (one per sample) or, with --history, every label."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--history", action="store_true", help="Every label, superseded too.")
        parser.add_argument("--output", "-o", default="-", help="A file; default: standard output.")

    def handle(self, *args, slug, format, history, output, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        chunks = label_export_chunks(project=project, history=history, fmt=format)
        if output == "-":
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        with open(output, "w", encoding="utf-8", newline="") as target:
            for chunk in chunks:
                target.write(chunk)
        self.stderr.write(f"wrote {output}")
