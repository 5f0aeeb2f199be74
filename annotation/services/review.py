"""Writes of the review page: a scientist's correction of a sample's label."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.access import SCIENCE_ROLES, member_require
from annotation.errors import SampleNotAvailable
from annotation.models import Label, Lease, Sample
from annotation.services import ledger


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
    ledger.label_check(project=project, value=value)
    sample = Sample.objects.select_for_update().get(pk=sample.pk)
    current = list(Label.objects.current().filter(sample=sample))
    if not current:
        raise SampleNotAvailable("this sample has no label to correct", detail={"sample": sample.pk})
    if len(current) == 1 and current[0].annotator_id == scientist.pk and current[0].value == value:
        return current[0]
    Lease.objects.filter(sample=sample).delete()  # before the ledger's counter update
    return ledger.correction_add(project=project, sample=sample, current=current,
                                 scientist=scientist, value=value)
