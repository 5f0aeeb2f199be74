"""Writes for production data: inputs seen by the served model, labeled by client feedback."""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from annotation import images
from annotation.models import Label, Lease, Project, Sample
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


def _sample_from_payload(project: Project, payload: ProductionPayload, origin: str,
                         **fields) -> Sample:
    """An unsaved sample holding ``payload`` (in the pool unless ``fields`` say otherwise;
    an image is written to storage now)."""
    fields.setdefault("split", Sample.Split.POOL)
    sample = Sample(project=project, origin=origin, **fields)
    if project.kind == Project.Kind.IMAGE:
        if not payload.image:
            raise InvalidProductionPayload("an image project's sample needs an image")
        sample.image.name, sample.thumbnail.name = _store_image(project, payload.image)
        sample.content_sha256 = images.content_sha256(payload.image)
    elif project.kind == Project.Kind.TEXT:
        if payload.text is None:
            raise InvalidProductionPayload("a text project's sample needs a text")
        sample.text = payload.text
    else:
        if payload.values is None:
            raise InvalidProductionPayload("a tabular project's sample needs values")
        sample.values = payload.values
    return sample


def _files_delete(samples: list[Sample]) -> None:
    for sample in samples:
        for name in (sample.image.name, sample.thumbnail.name):
            if name:
                default_storage.delete(name)


def production_sample_create(
    *, project: Project, payload: ProductionPayload, value: str,
    annotator: AbstractBaseUser | None = None,
) -> Label:
    """Store a production input a client sent feedback on as a labeled pool sample, and
    request a retrain if due.

    The sample gets ``origin=feedback`` and ``split=pool`` (never the test split, which
    stays a random draw of imported data), and counts toward the project's retrain batch.
    ``annotator`` defaults to the project's feedback user. Image files are written before
    the rows and removed again if the rows cannot be written.
    """
    ledger.label_check(project=project, value=value)
    annotator = annotator or feedback_annotator_get(project=project)
    sample = _sample_from_payload(project, payload, Sample.Origin.FEEDBACK)
    try:
        label = ledger.label_add_with_sample(project=project, sample=sample,
                                             annotator=annotator, value=value)
    except BaseException:
        _files_delete([sample])
        raise
    return label


@dataclass(frozen=True)
class RoutedInput:
    """A production input to route to annotators, most informative first, with the
    prediction that was made on it. ``held_out``: a uniform draw of production inputs,
    stored in the test split (see ``production_samples_route``)."""

    payload: ProductionPayload
    label: str
    confidence: float | None
    version: int | None
    held_out: bool = False


def routed_scores(*, project: Project, count: int) -> list[float]:
    """Queue scores for ``count`` routed inputs, so they take ``production_share`` of the
    next hand-outs: input i goes after about i × (1 − share) / share of the pool's best
    unlabeled samples (the pool's own order is untouched), the first ones above them all.

    Share 0 gives them no place of their own: they rank by their uncertainty among the
    pool's scores like any sample (the caller keeps that)."""
    share = project.production_share
    if count == 0 or share <= 0:
        return []
    ahead = [int(i * (1 - share) / share) for i in range(count)]
    pool = list(Sample.objects.in_pool().unlabeled()
                .filter(project=project).exclude(origin=Sample.Origin.PRODUCTION)
                .order_by("-score", "random_key").values_list("score", flat=True)[:ahead[-1] + 1])
    top = pool[0] if pool else 0.0
    scores = []
    for i, n in enumerate(ahead):
        if n == 0 or not pool:
            scores.append(top + 1.0 + (count - i) / count)  # above the pool, in their order
        elif n >= len(pool):
            scores.append(pool[-1] - 1e-6 * (i + 1))  # the pool runs out first
        else:
            scores.append((pool[n - 1] + pool[n]) / 2)
    return scores


@transaction.atomic
def production_samples_route(*, project: Project, inputs: list[RoutedInput]) -> list[Sample]:
    """Turn production inputs into unlabeled samples (``origin=production``) with the
    prediction that was made, in the order given.

    Pool samples are placed in the queue by ``routed_scores``. ``held_out`` inputs (drawn
    uniformly from production, so an unbiased sample of what the model now serves) go to
    the test split, ahead of the unlabeled imported test samples (a negative
    ``random_key``): the promotion check then compares versions on production data too,
    which after a shift is what decides whether a retrain is better, and no version trains
    on them, so their labels stay honest evidence of live accuracy across retrains."""
    pool_inputs = [item for item in inputs if not item.held_out]
    scores = iter(routed_scores(project=project, count=len(pool_inputs)))
    made: list[Sample] = []
    try:
        for item in inputs:
            prediction = {"label": item.label, "confidence": item.confidence,
                          "version": item.version}
            if item.held_out:
                fields = {"split": Sample.Split.TEST, "random_key": random.random() - 1.0}
            else:
                own = 1.0 - item.confidence if item.confidence is not None else 0.0
                fields = {"score": next(scores, own)}
            made.append(_sample_from_payload(project, item.payload, Sample.Origin.PRODUCTION,
                                             prediction=prediction, **fields))
        Sample.objects.bulk_create(made)
    except BaseException:
        _files_delete(made)
        raise
    return made


def production_label_correct(*, label: Label, value: str) -> Label:
    """Replace a production sample's label by ``value``, keeping the old one as history.

    The same value again is a no-op that returns the current label.
    """
    project = label.sample.project
    ledger.label_check(project=project, value=value)
    return ledger.label_replace(project=project, sample_id=label.sample_id,
                                annotator_id=label.annotator_id, value=value)


@transaction.atomic
def production_sample_feedback(*, project: Project, sample_id: int, value: str,
                               annotator: AbstractBaseUser | None = None) -> Label:
    """A client's feedback on a production input already routed to annotators: its label
    settles the sample (as a correction by the feedback user: annotators' labels on it are
    superseded, history keeps them)."""
    ledger.label_check(project=project, value=value)
    annotator = annotator or feedback_annotator_get(project=project)
    sample = Sample.objects.select_for_update().get(pk=sample_id, project=project)
    current = list(Label.objects.current().filter(sample=sample))
    if len(current) == 1 and current[0].annotator_id == annotator.pk and current[0].value == value:
        return current[0]
    Lease.objects.filter(sample=sample).delete()
    return ledger.correction_add(project=project, sample=sample, current=current,
                                 scientist=annotator, value=value)
