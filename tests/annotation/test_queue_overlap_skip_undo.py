"""The queue with overlap k, skips and undo: who gets which sample, and what stays counted."""
import datetime as dt

import pytest
from django.utils import timezone

from annotation.errors import NothingToUndo, SampleNotAvailable
from annotation.models import Label, Lease, Sample
from annotation.selectors import label_counts_get, project_progress
from annotation.services import (
    label_counts_rebuild,
    label_submit,
    label_undo_last,
    sample_lease_next,
    sample_skip,
)
from annotation.services.leases import sample_peek_next
from tests.factories import MembershipFactory, UserFactory


def _annotator(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="annotator")
    return user


@pytest.fixture
def pool_only(project):
    project.test_fraction = 0.0
    project.save(update_fields=["test_fraction"])
    return project


def test_overlap_two_hands_a_sample_to_two_annotators_and_never_twice_to_one(pool_only, make_samples):
    pool_only.overlap = 2
    pool_only.save(update_fields=["overlap"])
    first, second = make_samples(2)
    Sample.objects.filter(pk=first.pk).update(score=0.9)
    a, b, c = (_annotator(pool_only) for _ in range(3))

    assert sample_lease_next(project=pool_only, annotator=a).pk == first.pk
    assert sample_lease_next(project=pool_only, annotator=b).pk == first.pk  # concurrently
    assert sample_lease_next(project=pool_only, annotator=c).pk == second.pk  # first is full

    label_submit(sample=first, annotator=a, value="1")
    first.refresh_from_db()
    assert (first.status, first.label_count) == ("unlabeled", 1)
    # a never sees first again: a gets second (c holds it, but overlap leaves a place).
    assert sample_lease_next(project=pool_only, annotator=a).pk == second.pk
    label_submit(sample=first, annotator=b, value="2")
    first.refresh_from_db()
    assert (first.status, first.label_count) == ("labeled", 2)
    assert label_counts_get(project=pool_only).labeled_pool == 1

    label_submit(sample=second, annotator=a, value="0")
    label_submit(sample=second, annotator=c, value="0")
    for user in (a, b, c):
        assert sample_lease_next(project=pool_only, annotator=user) is None
    pairs = sorted(Label.objects.values_list("sample_id", "annotator_id"))
    assert len(pairs) == len(set(pairs)) == 4


def test_overlap_refuses_a_third_annotator_while_two_hold_the_sample(pool_only, make_samples):
    pool_only.overlap = 2
    pool_only.save(update_fields=["overlap"])
    (only,) = make_samples(1)
    a, b, c = (_annotator(pool_only) for _ in range(3))
    sample_lease_next(project=pool_only, annotator=a)
    sample_lease_next(project=pool_only, annotator=b)
    assert sample_lease_next(project=pool_only, annotator=c) is None
    with pytest.raises(SampleNotAvailable):
        label_submit(sample=only, annotator=c, value="0")
    assert not Label.objects.exists()


def test_label_after_expired_lease_is_accepted_unless_someone_else_took_it(pool_only, make_samples):
    first, second = make_samples(2)
    a, b = _annotator(pool_only), _annotator(pool_only)
    leased = sample_lease_next(project=pool_only, annotator=a)
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert label_submit(sample=leased, annotator=a, value="1").value == "1"  # nobody took it

    other = sample_lease_next(project=pool_only, annotator=a)
    Lease.objects.filter(sample=other).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert sample_lease_next(project=pool_only, annotator=b).pk == other.pk  # reclaimed
    with pytest.raises(SampleNotAvailable, match="leased by another"):
        label_submit(sample=other, annotator=a, value="1")
    assert Label.objects.filter(sample=other).count() == 0


def test_skip_gives_the_sample_to_others_but_never_back(pool_only, make_samples):
    first, second = make_samples(2)
    Sample.objects.filter(pk=first.pk).update(score=0.9)
    a, b = _annotator(pool_only), _annotator(pool_only)
    assert sample_lease_next(project=pool_only, annotator=a).pk == first.pk
    sample_skip(sample=first, annotator=a)
    assert sample_lease_next(project=pool_only, annotator=a).pk == second.pk
    assert sample_lease_next(project=pool_only, annotator=b).pk == first.pk
    label_submit(sample=second, annotator=a, value="0")
    assert sample_lease_next(project=pool_only, annotator=a) is None
    assert not Label.objects.filter(sample=first).exists()


def test_undo_supersedes_the_label_and_shows_the_sample_again(pool_only, make_samples):
    make_samples(3)
    a = _annotator(pool_only)
    sample = sample_lease_next(project=pool_only, annotator=a)
    label = label_submit(sample=sample, annotator=a, value="1")
    following = sample_lease_next(project=pool_only, annotator=a)
    assert following.pk != sample.pk
    assert label_counts_get(project=pool_only).labeled_pool == 1

    assert label_undo_last(project=pool_only, annotator=a).pk == sample.pk
    label.refresh_from_db()
    sample.refresh_from_db()
    assert label.superseded_at is not None  # history keeps it
    assert (sample.status, sample.label_count) == ("unlabeled", 0)
    counts = label_counts_get(project=pool_only)
    assert (counts.labeled_pool, counts.current_labels) == (0, 0)
    # The undone sample comes first, then the one that was on screen.
    assert sample_lease_next(project=pool_only, annotator=a).pk == sample.pk
    label_submit(sample=sample, annotator=a, value="2")
    assert sample_lease_next(project=pool_only, annotator=a).pk == following.pk
    assert list(Label.objects.current().filter(sample=sample).values_list("value", flat=True)) == ["2"]


def test_undo_with_nothing_to_undo_raises(pool_only, make_samples):
    make_samples(1)
    a = _annotator(pool_only)
    with pytest.raises(NothingToUndo):
        label_undo_last(project=pool_only, annotator=a)
    sample = sample_lease_next(project=pool_only, annotator=a)
    label_submit(sample=sample, annotator=a, value="0")
    label_undo_last(project=pool_only, annotator=a)
    with pytest.raises(NothingToUndo):  # one step only: the undone label stays history
        label_undo_last(project=pool_only, annotator=a)


def test_counts_match_a_recount_and_progress_reads_them(project, make_samples):
    project.test_fraction = 0.5
    project.save(update_fields=["test_fraction"])
    make_samples(4, 4)
    a = _annotator(project)
    for _ in range(5):
        sample = sample_lease_next(project=project, annotator=a)
        label_submit(sample=sample, annotator=a, value="0")
    label_undo_last(project=project, annotator=a)
    counts = label_counts_get(project=project)
    kept = (counts.labeled_pool, counts.labeled_test, counts.current_labels)
    rebuilt = label_counts_rebuild(project_id=project.pk)
    assert kept == (rebuilt.labeled_pool, rebuilt.labeled_test, rebuilt.current_labels)
    assert sum(kept[:2]) == 4
    progress = project_progress(project=project, requested_at_label_count=0)
    assert (progress.labeled, progress.total, progress.until_retrain) == (4, 8, project.batch_size - 4)


def test_peek_names_the_next_sample_without_leasing_it(pool_only, make_samples):
    first, second, third = make_samples(3)
    Sample.objects.filter(pk=first.pk).update(score=0.9)
    Sample.objects.filter(pk=second.pk).update(score=0.5)
    a = _annotator(pool_only)
    assert sample_lease_next(project=pool_only, annotator=a).pk == first.pk
    assert sample_peek_next(project=pool_only, annotator=a).pk == second.pk
    assert not Lease.objects.filter(sample=second).exists()


def test_lease_and_submit_check_roles_in_the_service(project, make_samples):
    from annotation.errors import NotAMember

    (sample,) = make_samples(1)
    outsider = UserFactory()
    with pytest.raises(NotAMember):
        sample_lease_next(project=project, annotator=outsider)
    with pytest.raises(NotAMember):
        sample_skip(sample=sample, annotator=outsider)
    with pytest.raises(NotAMember):
        label_undo_last(project=project, annotator=outsider)
