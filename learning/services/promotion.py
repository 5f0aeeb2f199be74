"""Serve a ready version: on request, or unless today's test labels show it worse than the
served one (``learning.promotion_check``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone
from sklearn.metrics import f1_score

from annotation.access import SCIENCE_ROLES, member_require
from annotation.models import Project, Sample
from annotation.selectors import labeled_samples
from learning import adaptive, artifacts, promotion_check
from learning.models import ModelVersion
from learning.model_input import sample_feature_matrix
from learning.services.liveness import _lock_project
from learning.services.training import TrainingError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Comparison:
    new_f1: float
    served_f1: float
    verdict: promotion_check.Verdict


def _compare_on_current_test(project: Project, version: ModelVersion,
                             served: ModelVersion) -> _Comparison | None:
    """Both versions on today's test labels: macro-F1 each, and the paired margins' verdict."""
    test_rows = labeled_samples(project=project, split=Sample.Split.TEST)
    if not test_rows:
        return None
    X_test = sample_feature_matrix(project=project, samples=[s for s, _v, _id in test_rows])
    y_test = np.asarray([value for _s, value, _id in test_rows])
    present = sorted(set(y_test.tolist()))
    scores, f1s = [], []
    for model in (version, served):
        estimator = artifacts.load(path=model.artifact_path, sha256=model.artifact_sha256)
        scores.append(adaptive.test_scores(estimator, X_test, y_test))
        f1s.append(float(f1_score(y_test, estimator.predict(X_test), labels=present,
                                  average="macro", zero_division=0)))
    return _Comparison(new_f1=f1s[0], served_f1=f1s[1],
                       verdict=promotion_check.paired_verdict(scores[0], scores[1]))


def _comparison_text(comparison: _Comparison, served: ModelVersion) -> str:
    verdict = comparison.verdict
    return (f"macro-F1 {comparison.new_f1:.3f} vs served v{served.number} "
            f"{comparison.served_f1:.3f} on the same {verdict.rows} test labels; margin difference "
            f"on them {verdict.mean:+.3f} per label (z {verdict.z:+.2f})")


@transaction.atomic
def model_version_promote(*, version: ModelVersion, note: str = "") -> ModelVersion:
    """Serve ``version`` instead of whichever version its project serves now."""
    if version.status != ModelVersion.Status.READY:
        raise TrainingError(f"version {version.number} is {version.status}, not ready")
    _lock_project(version.project_id)
    ModelVersion.objects.filter(project_id=version.project_id, is_served=True).update(
        is_served=False
    )
    version.is_served = True
    version.served_at = timezone.now()
    version.promotion_note = note or version.promotion_note
    version.save(update_fields=["is_served", "served_at", "promotion_note"])
    return version


def _promote_if_better(version: ModelVersion) -> None:
    project = version.project
    served = ModelVersion.objects.filter(project=project, is_served=True).first()
    if served is None:
        model_version_promote(version=version, note="first ready model")
        return
    # A retrain a rule asked for never unserves a better model, whatever the policy.
    if project.promotion == Project.Promotion.LATEST and version.trigger != ModelVersion.Trigger.RULE:
        model_version_promote(version=version, note="latest ready version (project setting)")
        return
    if version.macro_f1 is None:
        version.promotion_note = "not promoted: no labeled test samples to compare on"
        version.save(update_fields=["promotion_note"])
        return
    try:
        comparison = _compare_on_current_test(project, version, served)
    except artifacts.ArtifactError as exc:
        logger.error("artifact of %s or %s unusable: %s", version, served, exc)
        comparison = None
    if comparison is None:
        model_version_promote(version=version, note=(
            f"macro-F1 {version.macro_f1:.3f}; served v{served.number} could not be "
            "re-evaluated on the test labels"))
    elif not comparison.verdict.worse:
        model_version_promote(version=version, note=(
            f"{_comparison_text(comparison, served)}: not worse"))
    else:
        version.promotion_note = (
            f"not promoted: worse than the served version: {_comparison_text(comparison, served)}"
        )
        version.save(update_fields=["promotion_note"])


def model_version_serve_by(*, version: ModelVersion, user, rollback: bool,
                           expected_served: int | None) -> ModelVersion | None:
    """Serve ``version`` at the request of ``user`` (an owner or scientist) from its page.

    ``expected_served`` is the number of the version the page showed as served (0: none):
    if another version is served by now, nothing changes, so a stale page cannot undo
    someone else's promotion. The artifact must pass its sha256 check first. The note
    records who did it; returns the version served before (None if none).
    """
    project = version.project
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    if version.status != ModelVersion.Status.READY:
        raise TrainingError(f"version {version.number} is {version.status}, not ready")
    try:
        artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    except artifacts.ArtifactError as exc:
        raise TrainingError(f"v{version.number} cannot be served: {exc}") from exc
    with transaction.atomic():
        _lock_project(project.pk)
        served = ModelVersion.objects.filter(project=project, is_served=True).first()
        if expected_served is not None and (served.number if served else 0) != expected_served:
            now = f"v{served.number}" if served else "none"
            raise TrainingError(f"the served version changed (now {now}) since the page was "
                                "shown; nothing was changed")
        if served is not None and served.pk == version.pk:
            raise TrainingError(f"v{version.number} is already served")
        verb = "rolled back to" if rollback else "promoted"
        was = f"v{served.number}" if served else "none"
        model_version_promote(version=version, note=(
            f"{verb} by {user.get_username()} on the version page at "
            f"{timezone.now():%Y-%m-%d %H:%M:%S} UTC (was {was})"))
    return served
