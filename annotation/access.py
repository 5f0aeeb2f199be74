"""Who may do what in a project: the roles, and the one check every page, API and service uses.

Pages go through ``annotation.page_access.project_page``, APIs through the permission
classes in ``annotation.permissions``; both end in :func:`member_require`, which services
call again themselves, so no entry point can skip it.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser

from annotation.errors import NotAMember
from annotation.models import Membership, Project

LABELING_ROLES = (Membership.Role.OWNER, Membership.Role.SCIENTIST, Membership.Role.ANNOTATOR)
SCIENCE_ROLES = (Membership.Role.OWNER, Membership.Role.SCIENTIST)


def member_require(
    *,
    project: Project,
    user: AbstractBaseUser,
    roles: Sequence[str],
    membership: Membership | None = None,
) -> None:
    """Raise NotAMember unless ``user`` holds one of ``roles`` in ``project``.

    A caller that already loaded the membership for this request passes it and saves the
    query; it counts only as ``user``'s membership of ``project``, else the check queries.
    """
    if getattr(user, "is_superuser", False):
        return
    if (membership is not None and membership.project_id == project.pk
            and membership.user_id == user.pk):
        allowed = membership.role in roles
    else:
        allowed = Membership.objects.filter(
            project=project, user_id=user.pk, role__in=roles
        ).exists()
    if not allowed:
        raise NotAMember(f"you have no {'/'.join(roles)} role in project {project.slug!r}")


def may_create_projects(user: AbstractBaseUser) -> bool:
    """Staff, holders of the ``annotation.add_project`` permission (given in the admin), and
    people who already own a project may create projects; annotators and scientists may not."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_staff or user.has_perm("annotation.add_project"):
        return True
    return Membership.objects.filter(user_id=user.pk, role=Membership.Role.OWNER).exists()


def project_create_require(user: AbstractBaseUser) -> None:
    """Raise NotAMember unless ``user`` may create projects."""
    if not may_create_projects(user):
        raise NotAMember("only project owners and staff may create projects")
