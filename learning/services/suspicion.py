"""Find the labels that are probably wrong, after a retrain, off the retrain's path.

The retrain cycle starts ``label_suspicion_task`` once the new version is recorded and
served and the pool's rescoring is sent; the task waits while the project's cycle is busy
(``label_suspicion_waits``), so it delays neither the serving nor the queue. Then:

- **model**: the project's estimator, on the project's featurizer, predicts every
  current pool label out of sample (``FOLDS``-fold cross-validation over the
  ``MAX_LABELS`` most recent pool labels); confident learning flags the labels that are
  probably wrong (``learning.confident_learning``). Held-out test labels are not judged
  by a model, so corrections cannot bend the evaluation toward the model.
- **disagreement** (overlap > 1): every sample, pool or test, whose current labels differ;
  score 1 - the majority's share.

Both go to one list, one row per sample (the larger score and its reason), replaced per
project in one transaction (``LabelSuspicion``, at most ``MAX_STORED`` rows).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict

import numpy as np
from django.db import transaction
from django.utils import timezone

from annotation.models import Label, Project, Sample
from core.jobs import task_start_after_commit
from learning import confident_learning as cl
from learning.cycle_health import project_busy
from learning.estimators import build_estimator
from learning.model_input import model_input_of_ids
from learning.models import LabelSuspicion, LabelSuspicionRun, ModelVersion
from learning.services.featurizers import _project_featurizer

logger = logging.getLogger(__name__)

# The most recent current pool labels judged by the model per run (cross-validation fits
# FOLDS models on 4/5 of them each: about 4x a retrain's fit at this size).
MAX_LABELS = 50000
# Rows kept per project, most suspicious first.
MAX_STORED = 10000
TASK = "learning.tasks.label_suspicion_task"


def label_suspicion_start(*, version: ModelVersion) -> None:
    """Queue the search for wrong labels after ``version`` (a retrain that is recorded)."""
    task_start_after_commit(TASK, version.pk, on_failure=lambda exc: None)


def label_suspicion_waits(*, version_id: int) -> bool:
    """Whether the project's retrain cycle is still training or rescoring: wait for it."""
    project_id = (ModelVersion.objects.filter(pk=version_id)
                  .values_list("project_id", flat=True).first())
    return project_id is not None and project_busy(project_id, timezone.now())


def _current_labels(project: Project) -> tuple[dict[int, list], dict[int, tuple]]:
    """Return sample id -> its current labels' values, and sample id -> (label id, value,
    split) of the most recent one; over the most recent labels only."""
    limit = MAX_LABELS * max(1, project.overlap) * 2
    rows = (Label.objects.current().filter(sample__project=project)
            .order_by("-id").values_list("id", "sample_id", "value", "sample__split")[:limit])
    values: dict[int, list] = defaultdict(list)
    latest: dict[int, tuple] = {}
    for label_id, sample_id, value, split in rows:
        values[sample_id].append(value)
        latest.setdefault(sample_id, (label_id, value, split))
    return values, latest


def _model_judgement(project: Project, pool: list[tuple[int, int, str]]) -> tuple[dict, int, int, str]:
    """Return (sample id -> (score, likely), labels judged, folds, note) for ``pool``, a list
    of (sample id, label id, value), newest first."""
    pool = pool[:MAX_LABELS]
    y = np.asarray([value for _s, _l, value in pool], dtype=object).astype(str)
    keep = cl.judgeable(y)
    if len(set(y[keep].tolist())) < 2:
        return {}, 0, 0, (f"not judged: fewer than {cl.MIN_LABELS_PER_CLASS} pool labels in "
                          f"each of two classes")
    ids = np.fromiter((sample_id for sample_id, _l, _v in pool), dtype=np.int64, count=len(pool))
    ids, y = ids[keep], y[keep]
    order = np.argsort(ids)  # the feature cache reads ids in order fastest
    ids, y = ids[order], y[order]
    X = model_input_of_ids(project=project, ids=ids)
    featurizer = _project_featurizer(project)
    if featurizer is not None:
        X = featurizer.transform(X)
    estimator = build_estimator(project.model_spec, kind=project.kind)
    classes, probs = cl.out_of_sample_probabilities(estimator, X, y, folds=cl.FOLDS)
    flagged = cl.probably_wrong(np.searchsorted(classes, y), probs)
    judged = {int(ids[i]): (float(score), str(classes[likely]))
              for i, score, likely in zip(flagged.index, flagged.score, flagged.likely)}
    return judged, len(ids), cl.FOLDS, ""


def label_suspicion_update(*, version_id: int) -> LabelSuspicionRun | None:
    """Judge the project's current labels after ``version`` and replace its list.

    None when there is nothing to do: the version is gone or not ready, or a newer ready
    version exists (its own run follows).
    """
    version = ModelVersion.objects.select_related("project").filter(pk=version_id).first()
    if version is None or version.status != ModelVersion.Status.READY:
        return None
    if ModelVersion.objects.filter(project_id=version.project_id, number__gt=version.number,
                                   status=ModelVersion.Status.READY).exists():
        return None
    project = version.project
    started = time.perf_counter()
    values, latest = _current_labels(project)
    pool = [(sample_id, label_id, value) for sample_id, (label_id, value, split) in latest.items()
            if split == Sample.Split.POOL]
    judged, n_judged, folds, note = _model_judgement(project, pool)
    rows: dict[int, LabelSuspicion] = {}
    for sample_id, (score, likely) in judged.items():
        label_id, value, _split = latest[sample_id]
        rows[sample_id] = LabelSuspicion(
            project=project, sample_id=sample_id, label_id=label_id, value=value, likely=likely,
            score=score, reason=LabelSuspicion.Reason.MODEL, version=version)
    disagreements = 0
    for sample_id, given in values.items():
        label_id, value, _split = latest[sample_id]
        found = cl.disagreement(given, value)
        if found is None:
            continue
        disagreements += 1
        score, likely = found
        if sample_id not in rows or rows[sample_id].score < score:
            rows[sample_id] = LabelSuspicion(
                project=project, sample_id=sample_id, label_id=label_id, value=value,
                likely=likely, score=score, reason=LabelSuspicion.Reason.DISAGREEMENT,
                version=version)
    kept = sorted(rows.values(), key=lambda row: (-row.score, row.sample_id))[:MAX_STORED]
    return _replace(project, version, kept, labels_judged=n_judged, folds=folds,
                    flagged=len(judged), disagreements=disagreements, note=note,
                    seconds=time.perf_counter() - started)


@transaction.atomic
def _replace(project: Project, version: ModelVersion, rows: list[LabelSuspicion],
             **summary) -> LabelSuspicionRun | None:
    """Store a run's rows instead of the last run's, unless a newer version's run is stored."""
    LabelSuspicionRun.objects.get_or_create(project=project,
                                            defaults={"computed_at": timezone.now()})
    run = LabelSuspicionRun.objects.select_for_update().get(project=project)
    stored = (ModelVersion.objects.filter(pk=run.version_id).values_list("number", flat=True)
              .first() if run.version_id else None)
    if stored is not None and stored > version.number:
        logger.info("%s: a newer version's suspicion run is stored; %s's is dropped",
                    project, version)
        return None
    LabelSuspicion.objects.filter(project=project).delete()
    LabelSuspicion.objects.bulk_create(rows, batch_size=2000)
    run.version, run.computed_at = version, timezone.now()
    run.labels_judged, run.folds = summary["labels_judged"], summary["folds"]
    run.flagged_by_model, run.disagreements = summary["flagged"], summary["disagreements"]
    run.seconds, run.note = summary["seconds"], summary["note"]
    run.save()
    logger.info("%s: %d labels judged after v%d, %d flagged by the model, %d disagreements, "
                "%.1fs", project, run.labels_judged, version.number, run.flagged_by_model,
                run.disagreements, run.seconds)
    return run
