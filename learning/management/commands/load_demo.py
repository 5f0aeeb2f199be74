"""Create the demo users and the handwritten-digits image project, its queue ordered (idempotent).

Under the production settings (``PRODUCTION``) it refuses to run without ``--force``, and
even then gives the demo users random passwords, printed once: admin/admin on a server
reachable by others is an open door.
"""
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation.demo import digit_pngs, samples_create_images
from annotation.models import Membership, Project
from annotation.services import membership_set, project_create
from learning.services import pool_cold_start

DEMO_SLUG = "digits"
DEMO_USERS = [
    ("admin", "admin", Membership.Role.OWNER, True),
    ("annotator", "annotator", Membership.Role.ANNOTATOR, False),
    ("scientist", "scientist", Membership.Role.SCIENTIST, False),
]


class Command(BaseCommand):
    help = "Load the demo project: handwritten digits 0-9, with demo users."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="Load only this many digits.")
        parser.add_argument(
            "--force", action="store_true",
            help="Run under the production settings too; the demo users then get random "
                 "passwords, printed once.")

    @transaction.atomic
    def handle(self, *args, limit=None, force=False, **options):
        production = settings.PRODUCTION and not settings.DEBUG
        if production and not force:
            raise CommandError(
                "load_demo creates users with published passwords (admin/admin) and refuses "
                "to run under the production settings; use --force to load the demo anyway "
                "with random passwords, or run it with config.settings.local.")
        User = get_user_model()
        users, passwords = {}, {}
        for username, password, _role, is_super in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created or (production and user.check_password(password)):
                passwords[username] = secrets.token_urlsafe(12) if production else password
                user.set_password(passwords[username])
                if created:
                    user.is_superuser = user.is_staff = is_super
                user.save()
            users[username] = user
        project = Project.objects.filter(slug=DEMO_SLUG).first()
        if project is None:
            project = project_create(
                owner=users["admin"],
                slug=DEMO_SLUG,
                name="Handwritten digits",
                kind=Project.Kind.IMAGE,
                labels=[str(d) for d in range(10)],
            )
            count = samples_create_images(
                project=project,
                images=((eid, png) for eid, png, _label in digit_pngs(limit)),
            )
            self.stdout.write(f"Loaded {count} digit images into project {DEMO_SLUG!r}.")
            # Imports queue the k-means cold start after they commit; the demo writes its
            # samples directly, so it orders its first batch here.
            picked = pool_cold_start(project=project)
            self.stdout.write(f"Cold start: {picked} diverse digits lead the queue.")
        for username, _password, role, _is_super in DEMO_USERS:
            membership_set(project=project, user=users[username], role=role)
        if production:
            if passwords:
                self.stdout.write("Demo users, random passwords shown only now (username/password): "
                                  + ", ".join(f"{name}/{pw}" for name, pw in passwords.items()))
            return
        self.stdout.write(
            "Demo users (username/password): admin/admin (owner), annotator/annotator, "
            "scientist/scientist."
        )
