"""The demo command loads digits, users, and a cold-start batch at the head of the queue."""
from django.core.management import call_command

from annotation.models import Membership, Project, Sample


def test_load_demo_is_idempotent_and_orders_a_diverse_first_batch(db):
    call_command("load_demo", limit=120)
    call_command("load_demo", limit=120)
    project = Project.objects.get(slug="digits")
    assert Sample.objects.filter(project=project).count() == 120
    assert Membership.objects.filter(project=project).count() == 3
    head = Sample.objects.filter(project=project, split="pool", score__gt=0)
    assert head.count() == project.batch_size
