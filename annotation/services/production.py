"""Writes for production data: inputs seen by the served model, labeled by client feedback."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotation import images
from annotation.models import Label, Project, Sample
from annotation.services import ledger
from core.errors import DomainError


class InvalidProductionPayload(DomainError):
    code = "invalid_instance"


@dataclass(frozen=True)
class ProductionPayload:
    """What a production sample holds: image bytes, a text, or tabular values (by kind)."""

    image: bytes | None = None
    text: str | None = None
    values: dict | None = None


def feedback_annotator_get(*, project: Project) -> AbstractBaseUser:
    """Return the project's feedback user, creating it on first use.

    Labels from API feedback are attributed to this inactive, password-less user
    (``api-feedback-<project id>``), so they are never mistaken for a person's work and
    annotator statistics stay honest.
    """
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=f"api-feedback-{project.pk}", defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _store_image(project: Project, data: bytes) -> tuple[str, str]:
    try:
        checked = images.image_check(
            data, formats=settings.IMPORT_IMAGE_FORMATS, max_pixels=settings.MAX_IMAGE_PIXELS,
            max_bytes=settings.IMPORT_MAX_IMAGE_BYTES,
        )
    except images.ImageRejected as exc:
        raise InvalidProductionPayload(f"instance: {exc}") from None
    stem = f"samples/{project.pk}/production/{secrets.token_hex(12)}"
    image = default_storage.save(f"{stem}.{checked.extension}", ContentFile(data))
    thumb = images.thumbnail_png(data, size=settings.THUMBNAIL_SIZE)
    thumbnail = default_storage.save(f"{stem}.thumb.png", ContentFile(thumb))
    return image, thumbnail


def production_sample_create(
    *, project: Project, payload: ProductionPayload, value: str,
    annotator: AbstractBaseUser | None = None,
) -> Label:
    """Store a production input as a labeled pool sample and request a retrain if due.

    The sample gets ``origin=production`` and ``split=pool`` (never the test split, which
    stays a random draw of imported data), and counts toward the project's retrain batch.
    ``annotator`` defaults to the project's feedback user. Image files are written before
    the rows and removed again if the rows cannot be written.
    """
    ledger.label_check(project=project, value=value)
    annotator = annotator or feedback_annotator_get(project=project)
    sample = Sample(project=project, split=Sample.Split.POOL, origin=Sample.Origin.PRODUCTION)
    if project.kind == Project.Kind.IMAGE:
        if not payload.image:
            raise InvalidProductionPayload("an image project's sample needs an image")
        sample.image.name, sample.thumbnail.name = _store_image(project, payload.image)
    elif project.kind == Project.Kind.TEXT:
        if payload.text is None:
            raise InvalidProductionPayload("a text project's sample needs a text")
        sample.text = payload.text
    else:
        if payload.values is None:
            raise InvalidProductionPayload("a tabular project's sample needs values")
        sample.values = payload.values
    try:
        label = ledger.label_add_with_sample(project=project, sample=sample,
                                             annotator=annotator, value=value)
    except BaseException:
        for name in (sample.image.name, sample.thumbnail.name):
            if name:
                default_storage.delete(name)
        raise
    return label


def production_label_correct(*, label: Label, value: str) -> Label:
    """Replace a production sample's label by ``value``, keeping the old one as history.

    The same value again is a no-op that returns the current label.
    """
    project = label.sample.project
    ledger.label_check(project=project, value=value)
    return ledger.label_replace(project=project, sample_id=label.sample_id,
                                annotator_id=label.annotator_id, value=value)
