"""Writes of the review page: a scientist's correction of a sample's label."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.errors import InvalidLabel, SampleNotAvailable
from annotation.models import Label, Lease, Sample
from annotation.access import SCIENCE_ROLES, member_require
from annotation.services.queue import label_counts_add


@transaction.atomic
def label_correct(*, sample: Sample, scientist: AbstractBaseUser, value: str) -> Label:
    """Set ``sample``'s label to ``value`` as ``scientist``; owners and scientists only.

    Every current label of the sample is superseded (history keeps them) and one new label
    by the scientist becomes the sample's label, which also settles any disagreement. The
    sample counts as labeled from then on, whatever the overlap. Correcting to the value
    the scientist already set is a no-op.
    """
    project = sample.project
    member_require(project=project, user=scientist, roles=SCIENCE_ROLES)
    if value not in project.labels:
        raise InvalidLabel(
            f"{value!r} is not a label of project {project.slug!r}", detail=project.labels
        )
    sample = Sample.objects.select_for_update().get(pk=sample.pk)
    current = list(Label.objects.current().filter(sample=sample))
    if not current:
        raise SampleNotAvailable("this sample has no label to correct", detail={"sample": sample.pk})
    if len(current) == 1 and current[0].annotator_id == scientist.pk and current[0].value == value:
        return current[0]
    now = timezone.now()
    Label.objects.filter(pk__in=[label.pk for label in current]).update(superseded_at=now)
    label = Label.objects.create(sample=sample, annotator=scientist, value=value,
                                 is_correction=True)
    newly_labeled = sample.status != Sample.Status.LABELED
    Sample.objects.filter(pk=sample.pk).update(status=Sample.Status.LABELED, label_count=1)
    Lease.objects.filter(sample=sample).delete()
    delta = {"current_labels": 1 - len(current)}
    if newly_labeled:
        delta["labeled_test" if sample.split == Sample.Split.TEST else "labeled_pool"] = 1
    label_counts_add(project_id=project.pk, **delta)
    return label
