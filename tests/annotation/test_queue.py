"""The labeling queue: lease order, the held-out test split, and no double hand-outs."""
import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.errors import InvalidLabel, NotAMember, SampleNotAvailable
from annotation.models import Label, Lease, Sample
from annotation.selectors import membership_get
from annotation.services import label_submit, sample_lease_next
from tests.factories import MembershipFactory, UserFactory


def _annotator(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="annotator")
    return user


def test_sample_lease_next_picks_highest_score_in_pool(project, annotator, make_samples):
    project.test_fraction = 0.0
    project.save()
    samples = make_samples(5)
    Sample.objects.filter(pk=samples[3].pk).update(score=0.9)
    Sample.objects.filter(pk=samples[1].pk).update(score=0.5)
    assert sample_lease_next(project=project, annotator=annotator).pk == samples[3].pk
    other = _annotator(project)
    assert sample_lease_next(project=project, annotator=other).pk == samples[1].pk


def test_sample_lease_next_returns_held_lease_on_reload(project, annotator, make_samples):
    make_samples(5)
    first = sample_lease_next(project=project, annotator=annotator)
    assert sample_lease_next(project=project, annotator=annotator).pk == first.pk


def test_sample_lease_next_never_hands_one_sample_to_two_annotators(project, make_samples):
    make_samples(6, 2)
    annotators = [_annotator(project) for _ in range(8)]
    leased = [sample_lease_next(project=project, annotator=a) for a in annotators]
    assert all(s is not None for s in leased)
    assert len({s.pk for s in leased}) == 8
    assert sample_lease_next(project=project, annotator=_annotator(project)) is None


def test_sample_lease_next_reclaims_expired_lease(project, make_samples):
    (only,) = make_samples(1)
    first, second = _annotator(project), _annotator(project)
    assert sample_lease_next(project=project, annotator=first).pk == only.pk
    assert sample_lease_next(project=project, annotator=second) is None
    Lease.objects.filter(sample=only).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert sample_lease_next(project=project, annotator=second).pk == only.pk


def test_test_split_is_interleaved_at_its_share_by_random_not_score(project, annotator, make_samples):
    project.test_fraction = 0.25
    project.save()
    make_samples(30, 10)
    Sample.objects.filter(project=project, split="test").update(score=0.0)
    Sample.objects.filter(project=project, split="pool").update(score=0.5)
    splits = []
    for _ in range(20):
        sample = sample_lease_next(project=project, annotator=annotator)
        splits.append(sample.split)
        label_submit(sample=sample, annotator=annotator, value=project.labels[0])
    assert splits.count("test") == 5  # 25% of 20
    assert splits[0] == "test"  # the split starts below its share


def test_label_submit_marks_sample_labeled_and_releases_lease(project, annotator, make_samples):
    make_samples(3)
    sample = sample_lease_next(project=project, annotator=annotator)
    label = label_submit(sample=sample, annotator=annotator, value="1", duration_ms=800)
    sample.refresh_from_db()
    assert (sample.status, sample.label_count, label.value, label.duration_ms) == (
        "labeled", 1, "1", 800)
    assert not Lease.objects.filter(sample=sample).exists()


def test_label_submit_is_idempotent_for_the_same_value(project, annotator, make_samples):
    make_samples(1)
    sample = sample_lease_next(project=project, annotator=annotator)
    first = label_submit(sample=sample, annotator=annotator, value="2")
    again = label_submit(sample=sample, annotator=annotator, value="2")
    assert first.pk == again.pk and Label.objects.count() == 1


def test_label_submit_rejects_unknown_label_and_writes_nothing(project, annotator, make_samples):
    make_samples(1)
    sample = sample_lease_next(project=project, annotator=annotator)
    with pytest.raises(InvalidLabel):
        label_submit(sample=sample, annotator=annotator, value="cat")
    assert Label.objects.count() == 0


def test_label_submit_rejects_sample_leased_by_someone_else(project, annotator, make_samples):
    make_samples(1)
    sample = sample_lease_next(project=project, annotator=annotator)
    with pytest.raises(SampleNotAvailable):
        label_submit(sample=sample, annotator=_annotator(project), value="0")
    assert Label.objects.count() == 0


def test_label_submit_rejects_non_member(project, make_samples):
    (sample,) = make_samples(1)
    with pytest.raises(NotAMember):
        label_submit(sample=sample, annotator=UserFactory(), value="0")


def _membership_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if "annotation_membership" in q["sql"]]


def test_services_take_a_loaded_membership_as_proof_of_the_role_check(
        project, annotator, make_samples):
    make_samples(2)
    membership = membership_get(slug=project.slug, user=annotator)
    assert membership.project == project and membership.role == "annotator"
    with CaptureQueriesContext(connection) as queries:
        sample = sample_lease_next(project=project, annotator=annotator, membership=membership)
        label_submit(sample=sample, annotator=annotator, value="1", membership=membership)
    assert _membership_queries(queries) == []
    with CaptureQueriesContext(connection) as queries:
        sample_lease_next(project=project, annotator=annotator)  # no proof: checked here
    assert len(_membership_queries(queries)) == 1


def test_services_refuse_a_non_member_even_with_someone_elses_membership(project, annotator,
                                                                          make_samples):
    (sample,) = make_samples(1)
    proof = membership_get(slug=project.slug, user=annotator)
    outsider = UserFactory()
    assert membership_get(slug=project.slug, user=outsider) is None
    with pytest.raises(NotAMember):
        sample_lease_next(project=project, annotator=outsider, membership=proof)
    with pytest.raises(NotAMember):
        label_submit(sample=sample, annotator=outsider, value="0", membership=proof)
    elsewhere = MembershipFactory(user=outsider, role="owner")  # a role in another project
    with pytest.raises(NotAMember):
        sample_lease_next(project=project, annotator=outsider, membership=elsewhere)
    assert not Lease.objects.exists() and not Label.objects.exists()


def test_a_held_out_sample_takes_a_label_only_from_whom_it_was_leased_to(project, annotator,
                                                                         make_samples):
    """Nobody labels test samples by picking their ids: they come only from the queue."""
    pool, test, other_test = make_samples(1, n_test=2)
    with pytest.raises(SampleNotAvailable, match="not given to you"):
        label_submit(sample=test, annotator=annotator, value=project.labels[0])
    assert label_submit(sample=pool, annotator=annotator, value=project.labels[0]).is_new
    # Given to the annotator, even if the lease has since expired: accepted.
    Lease.objects.create(project=project, sample=test, annotator=annotator,
                         created_at=timezone.now(),
                         expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert label_submit(sample=test, annotator=annotator, value=project.labels[0]).is_new
    # A skipped lease gave the sample back: not accepted.
    someone = UserFactory()
    MembershipFactory(project=project, user=someone, role="annotator")
    Lease.objects.create(project=project, sample=other_test, annotator=someone, skipped=True,
                         created_at=timezone.now(),
                         expires_at=timezone.now() + dt.timedelta(minutes=5))
    with pytest.raises(SampleNotAvailable, match="not given to you"):
        label_submit(sample=other_test, annotator=someone, value=project.labels[0])
