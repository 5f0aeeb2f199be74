"""Export a ready model version as an MLflow model (zip) or an ONNX file."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from core.errors import DomainError
from learning.services import EXPORT_FORMATS, model_version_export


class Command(BaseCommand):
    help = ("Write model version N of a project as an MLflow model (a zip that "
            "mlflow.pyfunc.load_model loads once unzipped) or an ONNX file.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("number", type=int)
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="mlflow")
        parser.add_argument("--out", help="file to write (default: the export's own name, "
                                          "in the current directory)")

    def handle(self, *args, slug, number, format, out, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        try:
            export = model_version_export(project=project, number=number, fmt=format)
        except DomainError as exc:
            raise CommandError(f"{exc.message} ({exc.code})")
        path = Path(out or export.filename)
        path.write_bytes(export.content)
        self.stdout.write(f"wrote {path} ({len(export.content):,} bytes)")
