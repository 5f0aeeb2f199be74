"""Writes for projects and their members."""
from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.errors import InvalidLabel, NotAMember
from annotation.models import Membership, Project

LABELING_ROLES = (Membership.Role.OWNER, Membership.Role.SCIENTIST, Membership.Role.ANNOTATOR)
SCIENCE_ROLES = (Membership.Role.OWNER, Membership.Role.SCIENTIST)


def member_require(*, project: Project, user: AbstractBaseUser, roles: Sequence[str]) -> None:
    """Raise NotAMember unless ``user`` holds one of ``roles`` in ``project``."""
    if getattr(user, "is_superuser", False):
        return
    if not Membership.objects.filter(project=project, user_id=user.pk, role__in=roles).exists():
        raise NotAMember(f"you have no {'/'.join(roles)} role in project {project.slug!r}")


@transaction.atomic
def project_create(
    *,
    owner: AbstractBaseUser,
    slug: str,
    name: str,
    kind: str,
    labels: Sequence[str],
    batch_size: int = 20,
    test_fraction: float = 0.2,
    query_strategy: str = Project.Strategy.LEAST_CONFIDENT,
) -> Project:
    """Create a project and make ``owner`` its owner."""
    labels = [str(label).strip() for label in labels if str(label).strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InvalidLabel("a project needs at least two distinct labels", detail=labels)
    project = Project.objects.create(
        owner=owner,
        slug=slug,
        name=name,
        kind=kind,
        labels=labels,
        batch_size=batch_size,
        test_fraction=test_fraction,
        query_strategy=query_strategy,
    )
    Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    return project


@transaction.atomic
def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``project``, replacing any role they had."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership
