"""Review: corrections keep history, filters find disagreements; roles are checked in services."""
import numpy as np
import pytest

from annotation import hooks
from annotation.errors import InvalidLabel, NotAMember
from annotation.models import Label, Sample
from annotation.selectors import label_counts_get, review_page
from annotation.services import (
    label_correct,
    label_submit,
    project_settings_update,
    sample_lease_next,
)
from annotation.services.projects import InvalidSettings
from serving.suggestions import Suggestion
from tests.factories import MembershipFactory, UserFactory


def _member(project, role="annotator"):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


@pytest.fixture
def labeled(project, make_samples):
    """Overlap 2; three samples labeled by two annotators, the middle one in disagreement."""
    project.test_fraction = 0.0
    project.overlap = 2
    project.save(update_fields=["test_fraction", "overlap"])
    samples = make_samples(3)
    a, b = _member(project), _member(project)
    for sample, (va, vb) in zip(samples, [("0", "0"), ("1", "2"), ("2", "2")]):
        label_submit(sample=sample, annotator=a, value=va)
        label_submit(sample=sample, annotator=b, value=vb)
    return samples, a, b


def test_correction_supersedes_current_labels_and_keeps_history(project, labeled):
    samples, a, b = labeled
    scientist = _member(project, "scientist")
    label = label_correct(sample=samples[1], scientist=scientist, value="1")
    assert label.is_correction and label.annotator == scientist
    history = Label.objects.filter(sample=samples[1]).order_by("id")
    assert [(l.value, l.superseded_at is None) for l in history] == [
        ("1", False), ("2", False), ("1", True)]
    assert label_counts_get(project=project).current_labels == 6 - 2 + 1
    samples[1].refresh_from_db()
    assert samples[1].status == Sample.Status.LABELED
    again = label_correct(sample=samples[1], scientist=scientist, value="1")
    assert again.pk == label.pk  # the same correction twice is a no-op


def test_correction_is_for_owners_and_scientists_only(project, labeled):
    samples, a, _b = labeled
    with pytest.raises(NotAMember):
        label_correct(sample=samples[0], scientist=a, value="1")
    with pytest.raises(InvalidLabel):
        label_correct(sample=samples[0], scientist=project.owner, value="cat")
    assert not Label.objects.filter(superseded_at__isnull=False).exists()


def test_review_filters_by_label_annotator_and_disagreement(project, labeled):
    samples, a, b = labeled
    owner = project.owner
    ids = lambda page: [row.sample.pk for row in page.rows]  # noqa: E731
    assert ids(review_page(project=project, user=owner)) == [s.pk for s in reversed(samples)]
    assert ids(review_page(project=project, user=owner, label="2")) == [samples[2].pk, samples[1].pk]
    assert ids(review_page(project=project, user=owner, disagreement=True)) == [samples[1].pk]
    assert review_page(project=project, user=owner, disagreement=True).rows[0].annotators_disagree
    label_correct(sample=samples[1], scientist=owner, value="2")
    assert ids(review_page(project=project, user=owner, disagreement=True)) == []
    assert ids(review_page(project=project, user=owner, annotator_id=a.pk)) == [samples[2].pk, samples[0].pk]
    with pytest.raises(NotAMember):
        review_page(project=project, user=a)


def test_review_pages_by_sample_id(project, labeled, monkeypatch):
    samples, _a, _b = labeled
    monkeypatch.setattr("annotation.selectors.REVIEW_PAGE_SIZE", 2)
    first = review_page(project=project, user=project.owner)
    assert [r.sample.pk for r in first.rows] == [samples[2].pk, samples[1].pk]
    second = review_page(project=project, user=project.owner, before=first.next_before)
    assert [r.sample.pk for r in second.rows] == [samples[0].pk] and second.next_before is None


def test_review_model_filter_predicts_only_what_it_looks_at(project, labeled, monkeypatch):
    samples, _a, _b = labeled
    seen = []

    def fake(*, project, samples):
        seen.extend(s.pk for s in samples)
        return {s.pk: Suggestion(label="0", confidence=0.9, model_version=1) for s in samples}

    monkeypatch.setitem(hooks._registry, "suggestions", fake)
    page = review_page(project=project, user=project.owner, model_disagreement=True)
    assert [r.sample.pk for r in page.rows] == [samples[2].pk, samples[1].pk]  # label != "0"
    assert sorted(seen) == sorted(s.pk for s in samples)


def test_settings_update_checks_role_and_keys(project):
    annotator = _member(project)
    with pytest.raises(NotAMember):
        project_settings_update(project=project, user=annotator, overlap=2, keys=[],
                                show_suggestion=True, batch_size=5)
    with pytest.raises(InvalidSettings, match="kept for"):
        project_settings_update(project=project, user=project.owner, overlap=2,
                                keys=["a", "s", "d"], show_suggestion=True, batch_size=5)
    project_settings_update(project=project, user=project.owner, overlap=3, keys=["j", "k", "l"],
                            show_suggestion=False, batch_size=5)
    project.refresh_from_db()
    assert project.label_keys() == [("j", "0"), ("k", "1"), ("l", "2")]
    assert (project.overlap, project.show_suggestion, project.batch_size) == (3, False, 5)


def test_lowering_overlap_completes_samples_that_have_enough_labels(project, make_samples):
    project.test_fraction = 0.0
    project.overlap = 2
    project.save(update_fields=["test_fraction", "overlap"])
    (sample,) = make_samples(1)
    a = _member(project)
    label_submit(sample=sample_lease_next(project=project, annotator=a), annotator=a, value="1")
    project_settings_update(project=project, user=project.owner, overlap=1, keys=[],
                            show_suggestion=True, batch_size=project.batch_size)
    sample.refresh_from_db()
    assert sample.status == Sample.Status.LABELED
    assert label_counts_get(project=project).labeled_pool == 1


def test_suggestions_use_the_served_model_for_the_given_samples(project, make_samples, monkeypatch):
    from serving import suggestions
    from serving import model_cache

    samples = make_samples(2)

    class Estimator:
        classes_ = np.array(["0", "1", "2"])

        def predict_proba(self, X):
            return np.tile([0.1, 0.7, 0.2], (len(X), 1))

    monkeypatch.setattr(suggestions, "served_model", lambda *, project_id: model_cache.LoadedModel(
        version_id=1, number=4, estimator=Estimator()))
    got = suggestions.suggestions_for(project=project, samples=samples)
    assert got[samples[0].pk] == Suggestion(label="1", confidence=0.7, model_version=4)
    assert suggestions.suggestions_for(project=project, samples=[]) == {}


def test_suggestions_are_empty_without_a_served_model(project, make_samples):
    from serving.suggestions import suggestions_for

    assert suggestions_for(project=project, samples=make_samples(1)) == {}
