"""Create a project of images, texts or tabular rows with its label set."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from core.errors import DomainError
from annotation.forms import ProjectCreateForm
from annotation.models import Project
from annotation.services import project_create


class Command(BaseCommand):
    help = "Create a project: create_project <slug> --kind image|text|tabular --labels a,b,c"

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--kind", required=True, choices=Project.Kind.values)
        parser.add_argument("--labels", required=True, help="Comma-separated, at least two.")
        parser.add_argument("--batch-size", type=int, default=20, help="Retrain every N labels.")
        parser.add_argument("--name", default="", help="Default: the slug.")
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--owner", default=None, help="Username; default: the first superuser.")

    def handle(self, *args, slug, kind, labels, batch_size, name, test_fraction, owner, **options):
        form = ProjectCreateForm({
            "slug": slug, "name": name or slug, "kind": kind, "labels": labels,
            "batch_size": batch_size, "test_fraction": test_fraction,
        })
        if not form.is_valid():
            raise CommandError("; ".join(f"{field}: {' '.join(errors)}"
                                         for field, errors in form.errors.items()))
        User = get_user_model()
        if owner:
            user = User.objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user {owner!r}")
        else:
            user = User.objects.filter(is_superuser=True).order_by("pk").first()
            if user is None:
                raise CommandError("no superuser to own the project: pass --owner <username>")
        try:
            project = project_create(owner=user, **form.cleaned_data)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        except IntegrityError:
            raise CommandError(f"a project {slug!r} exists already") from None
        self.stdout.write(f"created {project.kind} project {project.slug!r} "
                          f"with labels {', '.join(project.labels)}, owned by {user.username}")
