"""Writes for projects and their members."""
from __future__ import annotations

import secrets
from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.access import (
    LABELING_ROLES,
    SCIENCE_ROLES,
    member_require,
    project_create_require,
)
from annotation.authentication import key_hash
from annotation.errors import InvalidLabel
from annotation.models import COMMAND_KEYS, ApiToken, Membership, Project
from annotation.services import ledger
from core.errors import DomainError
from core.text import text_check



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
    query_strategy: str = Project.Strategy.DEFAULT,
) -> Project:
    """Create a project and make ``owner`` its owner."""
    text_check(slug, field="slug", max_chars=100)
    text_check(name, field="name", max_chars=200)
    labels = [text_check(str(label), field="labels", max_chars=200).strip()
              for label in labels if str(label).strip()]
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
    ledger.label_counts_create(project=project)
    return project


class InvalidSettings(DomainError):
    code = "invalid_settings"


def project_create_by(*, user: AbstractBaseUser, **fields) -> Project:
    """Create a project on behalf of ``user`` from a page: only staff and owners may.

    Commands (``create_project``, ``load_demo``) are run by the operator and call
    :func:`project_create` directly.
    """
    project_create_require(user)
    return project_create(owner=user, **fields)


def _keys_check(keys: Sequence[str], labels: Sequence[str]) -> list[str]:
    keys = [str(key) for key in keys]
    if not keys:
        return []
    if len(keys) != len(labels):
        raise InvalidSettings(f"give one key per label ({len(labels)}), in label order")
    if any(len(key) != 1 or key.isspace() for key in keys):
        raise InvalidSettings("each key is a single character")
    if len({key.lower() for key in keys}) != len(keys):
        raise InvalidSettings("the keys must be distinct")
    taken = sorted({key for key in keys if key.lower() in COMMAND_KEYS})
    if taken:
        raise InvalidSettings(f"{', '.join(taken)} are kept for skip, undo, zoom and help")
    return keys


@transaction.atomic
def project_settings_update(
    *,
    project: Project,
    user: AbstractBaseUser,
    overlap: int,
    keys: Sequence[str],
    show_suggestion: bool,
    batch_size: int,
) -> Project:
    """Change a project's labeling settings; owners and scientists only.

    A larger overlap puts labeled samples back in the queue only for samples labeled from
    now on; samples already labeled stay labeled.
    """
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    if not 1 <= overlap <= 20:
        raise InvalidSettings("overlap is between 1 and 20 annotators per sample")
    if batch_size < 1:
        raise InvalidSettings("batch size is at least 1")
    if overlap < project.overlap:
        ledger.samples_complete(project=project, overlap=overlap)
    project.overlap = overlap
    project.keys = _keys_check(keys, project.labels)
    project.show_suggestion = show_suggestion
    project.batch_size = batch_size
    project.save(update_fields=["overlap", "keys", "show_suggestion", "batch_size"])
    return project


@transaction.atomic
def personal_token_create(*, project: Project, user: AbstractBaseUser) -> tuple[object, str]:
    """Create a personal API token acting as ``user`` in ``project``; return it and its key.

    Only the key's hash is stored. The token may label (``next``, ``labels``) with the
    user's role; it carries none of the project token scopes (predict, feedback, admin).
    """
    member_require(project=project, user=user, roles=LABELING_ROLES)
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project, user=user, name=f"personal: {user.get_username()}",
        key_hash=key_hash(key), key_prefix=key[:8], scopes=[ApiToken.Scope.LABEL],
    )
    return token, key


@transaction.atomic
def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``project``, replacing any role they had."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership
