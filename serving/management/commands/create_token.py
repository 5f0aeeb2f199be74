"""Create an API token for a project and print its key once."""
from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from annotation.models import Project
from serving.services import api_token_create


class Command(BaseCommand):
    help = "Create a per-project API token; the key is printed once and stored hashed."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--scopes", default="predict", help="Comma-separated: predict,feedback,admin,monitor")
        parser.add_argument("--name", default="")

    def handle(self, *args, slug, scopes, name, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        try:
            _token, key = api_token_create(
                project=project, scopes=[s.strip() for s in scopes.split(",") if s.strip()], name=name
            )
        except DomainError as exc:
            raise CommandError(exc.message)
        self.stdout.write(key)
