"""Create a project of images, texts or tabular rows with its label set and how it learns."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from core.errors import DomainError
from annotation.forms import ProjectCreateForm
from annotation.management.settings_options import (
    form_errors_message,
    learning_arguments_add,
    learning_options,
)
from annotation.models import Project
from annotation.services import project_create


class Command(BaseCommand):
    help = ("Create a project: create_project <slug> --kind image|text|tabular --labels a,b,c "
            "[--batch-size N] [--strategy S] [--model M [--C x | --n-estimators n]] "
            "[--promotion best|latest] [--test-fraction f]")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--kind", required=True, choices=Project.Kind.values)
        parser.add_argument("--labels", required=True, help="Comma-separated, at least two.")
        parser.add_argument("--name", default="", help="Default: the slug.")
        parser.add_argument("--owner", default=None, help="Username; default: the first superuser.")
        learning_arguments_add(parser, batch_size=20, test_fraction=0.2)

    def handle(self, *args, slug, kind, labels, name, owner, **options):
        form = ProjectCreateForm({"slug": slug, "name": name or slug, "kind": kind,
                                  "labels": labels, **learning_options(options)})
        if not form.is_valid():
            raise CommandError(form_errors_message(form, positional=("slug",)))
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
        params = "".join(f", {k}={v}" for k, v in project.estimator_params.items())
        self.stdout.write(
            f"created {project.kind} project {project.slug!r} with labels "
            f"{', '.join(project.labels)}, owned by {user.username}; model {project.estimator}"
            f"{params}, strategy {project.query_strategy}, promotion {project.promotion}, "
            f"batch size {project.batch_size}, test fraction {project.test_fraction:g}")
