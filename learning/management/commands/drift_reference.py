"""Build the input-drift reference of versions trained before references were kept."""
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from learning.artifacts import ArtifactError
from learning.models import DriftReference, ModelVersion
from learning.services.drift_reference import drift_reference_backfill


class Command(BaseCommand):
    help = ("Build the drift reference (a random sample of the project's samples as they are "
            "now) of a project's ready versions that have none, or of --version N again.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--number", type=int, help="only this version, rebuilt if it has one")

    def handle(self, *args, slug, number, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        versions = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY)
        if number is not None:
            versions = versions.filter(number=number)
            if not versions.exists():
                raise CommandError(f"{slug} has no ready version {number}")
        else:
            has = DriftReference.objects.filter(version__project=project).values("version_id")
            versions = versions.exclude(pk__in=has)
        for v in versions.order_by("number"):
            try:
                reference = drift_reference_backfill(version=v)
            except ArtifactError as exc:
                self.stderr.write(f"v{v.number}: {exc}")
                continue
            if reference is None:
                self.stdout.write(f"v{v.number}: no samples, no reference")
            else:
                self.stdout.write(f"v{v.number}: {reference.note}")
