"""Create a user (or reuse one), give them a role in a project, optionally a personal token."""
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Membership, Project
from annotation.services import membership_set, personal_token_create


class Command(BaseCommand):
    help = "Create or update a user and set their role in a project."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--project", required=True)
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.ANNOTATOR)
        parser.add_argument("--password", default=None, help="Default: a random one, printed.")
        parser.add_argument(
            "--token", action="store_true",
            help="Also print a personal API token (Authorization: Token <key>) acting as "
                 "this user in the project; the key is shown once and stored hashed.",
        )

    def handle(self, *args, username, project, role, password, token=False, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"no project {project!r}")
        user, created = get_user_model().objects.get_or_create(username=username)
        if created or password:
            password = password or secrets.token_urlsafe(9)
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"password: {password}")
        membership_set(project=target, user=user, role=role)
        self.stdout.write(f"{username} is {role} of {project}")
        if token:
            _token, key = personal_token_create(project=target, user=user)
            self.stdout.write(f"token: {key}")
