"""Retrain: trigger on a full batch, coalesce, evaluate on the test split, promote, rescore."""
import numpy as np
import pytest

from annotation.models import Sample
from tests.factories import label_given
from learning import artifacts
from learning.model_input import model_input_of_ids
from learning.models import ModelVersion
from learning.services import model_version_request, model_version_train
from learning.strategies import uncertainty_scores


def test_model_version_train_fits_evaluates_promotes_and_rescores(labeled_project, make_samples,
                                                                 django_capture_on_commit_callbacks):
    unlabeled = make_samples(9)
    with django_capture_on_commit_callbacks(execute=True):
        version = model_version_request(project=labeled_project)
    version.refresh_from_db()
    assert version.status == "ready", version.error
    assert version.is_served and version.trained_on_label_count == 30
    assert version.test_label_count == 12
    assert version.accuracy > 0.9 and version.macro_f1 > 0.9
    assert len(version.metrics["confusion_matrix"]) == 3
    assert version.artifact_sha256 and version.label_snapshot_sha256
    scores = Sample.objects.filter(pk__in=[s.pk for s in unlabeled]).values_list("score", flat=True)
    # Uncertainties lie in [0, 1]; the default strategy ranks a diverse batch above them.
    assert all(0 <= s <= 2 for s in scores) and len(set(scores)) > 1
    assert version.scored_sample_count == 9


def test_batch_of_labels_triggers_exactly_one_retrain(project, annotator, make_samples,
                                                      django_capture_on_commit_callbacks):
    project.batch_size = 6
    project.save()
    samples = make_samples(8, 4)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for i, sample in enumerate(samples[:5]):
            label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    assert ModelVersion.objects.count() == 0 and not callbacks
    label_given(sample=samples[5], annotator=annotator, value="0")
    assert ModelVersion.objects.count() == 1
    label_given(sample=samples[6], annotator=annotator, value="1")
    assert ModelVersion.objects.count() == 1  # counted from the newest request


def test_requests_coalesce_into_the_queued_version(labeled_project):
    first = model_version_request(project=labeled_project)
    second = model_version_request(project=labeled_project)
    assert first.pk == second.pk and ModelVersion.objects.count() == 1


def test_one_class_fails_with_reason_and_keeps_served_model(project, annotator, make_samples):
    samples = make_samples(6, 2)
    for sample in samples:
        label_given(sample=sample, annotator=annotator, value="1")
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    assert version.status == "failed" and "only one class" in version.error
    assert not ModelVersion.objects.filter(is_served=True).exists()


def _good_then_junk(project) -> tuple[ModelVersion, ModelVersion]:
    """Train a version on the true labels, relabel the pool wrongly and train another: the
    second learns junk and must not be served."""
    from annotation.models import Label

    good = model_version_request(project=project)
    model_version_train(version_id=good.pk)
    pool = Label.objects.filter(sample__split="pool")
    pool.update(value="0")
    pool.filter(id__in=list(pool.values_list("id", flat=True)[:10])).update(value="2")
    bad = model_version_request(project=project)
    model_version_train(version_id=bad.pk)
    good.refresh_from_db()
    bad.refresh_from_db()
    return good, bad


def test_worse_model_is_not_promoted(labeled_project, annotator):
    good, bad = _good_then_junk(labeled_project)
    assert bad.status == "ready" and not bad.is_served and good.is_served
    assert bad.promotion_note.startswith("not promoted")


def test_training_a_claimed_version_again_is_a_no_op(labeled_project):
    version = model_version_request(project=labeled_project)
    assert model_version_train(version_id=version.pk) is not None
    assert model_version_train(version_id=version.pk) is None


def test_tampered_artifact_is_refused(labeled_project):
    version = model_version_request(project=labeled_project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    path = artifacts.artifact_root() / version.artifact_path
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(artifacts.ArtifactError):
        artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)


def test_rescoring_stores_each_chunks_top_and_resets_the_earlier_ranking(
        labeled_project, make_samples, monkeypatch, django_capture_on_commit_callbacks):
    from learning.model_input import pool_chunk_bounds
    from learning.services import scoring

    labeled_project.query_strategy = "margin"
    labeled_project.batch_size = 1
    labeled_project.save()
    unlabeled = make_samples(12)
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 5)
    monkeypatch.setattr(scoring, "QUEUE_TOP_PER_CHUNK", 2)
    monkeypatch.setattr(scoring, "QUEUE_TOP_BATCHES", 1)
    ids = [s.pk for s in unlabeled]
    # An earlier ranking's scores, which the new one must replace, not leave behind.
    Sample.objects.filter(pk__in=ids).update(score=5.0)
    with django_capture_on_commit_callbacks(execute=True):
        version = model_version_request(project=labeled_project)
    version.refresh_from_db()
    assert version.status == "ready", version.error
    assert version.score_chunks_total == 3 and version.scored_sample_count == 12
    scores = dict(Sample.objects.filter(pk__in=ids).values_list("pk", "score"))
    ranked = [pk for pk, score in scores.items() if score > 0]
    assert all(score <= 1 for score in scores.values())  # no stale 5.0 left
    # Three chunks of about 5 keep their top 2 each (ties at 0 cannot be told apart).
    assert 4 <= len(ranked) <= 6
    bounds = pool_chunk_bounds(project=labeled_project, size=5)
    assert len(bounds) == 3
    for lo, hi in bounds:
        assert sum(scores[pk] > 0 for pk in ids if lo <= pk <= hi) <= 2


def test_rescoring_stores_no_more_than_the_cap_per_chunk_at_a_huge_batch_size(
        labeled_project, make_samples, monkeypatch, django_capture_on_commit_callbacks):
    """Twenty batches of a batch size of 1,000 would be every row of a chunk: the rows
    rewritten (the rescoring's cost) must not grow with the batch size (issue 17)."""
    from learning.model_input import pool_chunk_bounds
    from learning.services import scoring

    labeled_project.query_strategy = "margin"
    labeled_project.batch_size = 1000
    labeled_project.save()
    unlabeled = make_samples(12)
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 5)
    monkeypatch.setattr(scoring, "QUEUE_TOP_PER_CHUNK", 2)
    monkeypatch.setattr(scoring, "QUEUE_TOP_MAX_PER_CHUNK", 3)
    ids = [s.pk for s in unlabeled]
    with django_capture_on_commit_callbacks(execute=True):
        version = model_version_request(project=labeled_project)
    version.refresh_from_db()
    assert version.status == "ready", version.error
    scores = dict(Sample.objects.filter(pk__in=ids).values_list("pk", "score"))
    assert sum(score > 0 for score in scores.values()) >= 3  # the chunks' tops are stored
    for lo, hi in pool_chunk_bounds(project=labeled_project, size=5):
        assert sum(scores[pk] > 0 for pk in ids if lo <= pk <= hi) <= 3


def test_a_version_that_is_not_promoted_still_orders_the_queue(labeled_project, annotator,
                                                               make_samples):
    """Promotion decides what clients get; the queue is ordered by the newest ready version,
    which knows the newest labels, even when the served one won the check."""
    from learning.models import StrategyPick
    from learning.selectors import ranking_staleness

    labeled_project.batch_size = 5  # a head of 5 picks; the rest keep plain uncertainty
    labeled_project.save()
    unlabeled = make_samples(9)
    good, bad = _good_then_junk(labeled_project)
    assert good.is_served and not bad.is_served
    assert bad.scored_by_id == bad.pk and bad.scored_sample_count == 9
    # The head of the queue is the bad version's ranking.
    head = Sample.objects.filter(pk__in=[s.pk for s in unlabeled], score__gt=1.0)
    picks = StrategyPick.objects.filter(sample__in=head)
    assert head.count() == 5 and picks.count() == 5
    assert set(picks.values_list("ranked_by", flat=True)) == {bad.number}
    # The queue's scores are the bad version's uncertainties, not the served one's.
    model = artifacts.load(path=bad.artifact_path, sha256=bad.artifact_sha256)
    ids = np.asarray(sorted(s.pk for s in unlabeled))
    expected = uncertainty_scores(model, model_input_of_ids(project=labeled_project, ids=ids),
                                  strategy=labeled_project.query_strategy, seed=bad.number)
    got = dict(Sample.objects.filter(pk__in=ids.tolist()).values_list("pk", "score"))
    unpicked = [i for i, pk in enumerate(ids) if got[pk] <= 1.0]  # picks rank above 1
    assert unpicked and all(got[ids[i]] == pytest.approx(expected[i]) for i in unpicked)
    staleness = ranking_staleness(project=labeled_project)
    assert staleness.version == bad.number and staleness.labels_since == 0
