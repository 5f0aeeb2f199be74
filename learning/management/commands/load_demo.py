"""Create the demo users and the handwritten-digits image project, its queue ordered (idempotent)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
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

    @transaction.atomic
    def handle(self, *args, limit=None, **options):
        User = get_user_model()
        users = {}
        for username, password, _role, is_super in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
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
        self.stdout.write(
            "Demo users (username/password): admin/admin (owner), annotator/annotator, "
            "scientist/scientist."
        )
