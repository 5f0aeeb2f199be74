"""The promotion check: a new version is served unless the paired margins on today's test
labels show it worse (learning/promotion_check.py, learning/services/promotion.py)."""
import math

import numpy as np

from annotation.models import Sample
from annotation.selectors import labeled_samples
from learning import promotion_check
from learning.models import ModelVersion
from learning.services import model_version_request, model_version_train
from learning.services import promotion


def test_equal_scores_are_not_worse():
    verdict = promotion_check.paired_verdict([0.5, -0.2, 0.9], [0.5, -0.2, 0.9])
    assert verdict.z == 0.0 and not verdict.worse


def test_a_consistent_loss_is_worse_and_a_consistent_gain_is_not():
    served = np.linspace(-0.5, 0.9, 40)
    noise = np.random.default_rng(0).normal(0, 0.05, 40)
    assert promotion_check.paired_verdict(served - 0.1 + noise, served).worse
    assert not promotion_check.paired_verdict(served + 0.1 + noise, served).worse


def test_one_row_or_none_is_no_evidence():
    assert not promotion_check.paired_verdict([-1.0], [1.0]).worse
    assert promotion_check.paired_verdict([], []).rows == 0


def test_every_row_lost_alike_is_worse():
    verdict = promotion_check.paired_verdict([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert verdict.z == -math.inf and verdict.worse


class _Fixed:
    """An estimator whose probabilities on the test rows are given in advance."""

    classes_ = np.asarray(["0", "1", "2"])

    def __init__(self, proba):
        self.proba = np.asarray(proba, dtype=float)

    def predict_proba(self, X):
        assert len(X) == len(self.proba)
        return self.proba

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _sure(label: str, p: float) -> list[float]:
    row = [(1.0 - p) / 2] * 3
    row[int(label)] = p
    return row


def _two_versions(project):
    """Two ready versions of ``project`` and its test labels, in the promotion check's order."""
    versions = []
    for _ in range(2):
        version = model_version_request(project=project)
        model_version_train(version_id=version.pk)
        version.refresh_from_db()
        versions.append(version)
    y = [value for _s, value, _id in labeled_samples(project=project, split=Sample.Split.TEST)]
    return versions[0], versions[1], y


def _check_with(monkeypatch, served, new, served_proba, new_proba):
    """Run the check on ``new`` against ``served``, their probabilities given, ``served``
    the served version."""
    fakes = {served.artifact_path: _Fixed(served_proba), new.artifact_path: _Fixed(new_proba)}
    monkeypatch.setattr(promotion.artifacts, "load", lambda *, path, sha256: fakes[path])
    ModelVersion.objects.filter(pk=new.pk).update(is_served=False)
    ModelVersion.objects.filter(pk=served.pk).update(is_served=True)
    promotion._promote_if_better(new)
    new.refresh_from_db()


def test_a_version_one_test_label_behind_but_surer_elsewhere_is_served(labeled_project,
                                                                      monkeypatch):
    """The old check (macro-F1 at least the served one's) refused such versions: on a few
    dozen labels one row decides, and most new versions were refused on noise."""
    served, new, y = _two_versions(labeled_project)
    wrong = str((int(y[0]) + 1) % 3)
    served_proba = [_sure(label, 0.6) for label in y]  # every row right
    new_proba = [_sure(wrong, 0.5)] + [_sure(label, 0.9) for label in y[1:]]
    _check_with(monkeypatch, served, new, served_proba, new_proba)
    assert new.is_served, new.promotion_note
    assert "not worse" in new.promotion_note
    assert f"served v{served.number} 1.000" in new.promotion_note  # its macro-F1 was higher


def test_a_version_behind_on_most_test_labels_is_refused(labeled_project, monkeypatch):
    served, new, y = _two_versions(labeled_project)
    _check_with(monkeypatch, served, new, [_sure(label, 0.9) for label in y],
                [_sure(label, 0.5) for label in y])
    assert not new.is_served
    assert new.promotion_note.startswith("not promoted: worse than the served version")
