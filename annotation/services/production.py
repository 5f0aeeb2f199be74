"""Writes for production data: inputs seen by the served model, labeled by client feedback."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotation import hooks
from annotation import images
from core.errors import DomainError
from annotation.errors import InvalidLabel
from annotation.models import Label, Project, Sample
from annotation.services.queue import label_counts_add


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


def _label_check(project: Project, value: str) -> None:
    if value not in project.labels:
        raise InvalidLabel(
            f"{value!r} is not a label of project {project.slug!r}", detail=project.labels
        )


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
    _label_check(project, value)
    annotator = annotator or feedback_annotator_get(project=project)
    sample = Sample(project=project, split=Sample.Split.POOL, origin=Sample.Origin.PRODUCTION,
                    status=Sample.Status.LABELED, label_count=1)
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
        with transaction.atomic():
            sample.save()
            label = Label.objects.create(sample=sample, annotator=annotator, value=value)
            # Counters first: the retrain check reads them and must see this label.
            label_count = label_counts_add(project_id=project.pk, labeled_pool=1,
                                           current_labels=1)
            hooks.labels_added(project=project, label_count=label_count)
    except BaseException:
        for name in (sample.image.name, sample.thumbnail.name):
            if name:
                default_storage.delete(name)
        raise
    return label


@transaction.atomic
def production_label_correct(*, label: Label, value: str) -> Label:
    """Replace a production sample's label by ``value``, keeping the old one as history.

    The same value again is a no-op that returns the current label.
    """
    project = label.sample.project
    _label_check(project, value)
    current = (
        Label.objects.current().select_for_update()
        .filter(sample_id=label.sample_id, annotator_id=label.annotator_id).first()
    )
    if current is not None and current.value == value:
        return current
    if current is not None:
        Label.objects.filter(pk=current.pk).update(superseded_at=timezone.now())
    corrected = Label.objects.create(sample_id=label.sample_id, annotator_id=label.annotator_id,
                                     value=value)
    if current is None:  # no current label was replaced: one more current label
        label_counts_add(project_id=project.pk, current_labels=1)
    return corrected
