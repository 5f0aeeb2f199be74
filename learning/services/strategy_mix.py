"""The adaptive default's bookkeeping: which arm picked each sample, and the measured mix.

The ranking records the arm of every pick it writes (``StrategyPick``, one row per sample,
the newest ranking's). Before the next ranking, the labels that arrived since are
measured (``learning.adaptive.measure``) against the held-out test labels and the project's
``StrategyMix`` is updated. Both live in the database: a restarted worker, or another
worker ranking the next version, reads what the last one wrote; annotators only ever
label, so any number of them may work concurrently.
"""
from __future__ import annotations

import logging
import time

import numpy as np
from django.db import transaction
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from annotation.models import Project, Sample
from annotation.selectors import labeled_samples
from learning import adaptive
from learning.model_input import model_input_of_ids
from learning.models import StrategyMix, StrategyPick

logger = logging.getLogger(__name__)


def strategy_picks_record(*, project: Project, sample_ids, arms, ranked_by: int) -> None:
    """Record that ``arms[i]`` picked ``sample_ids[i]`` in the ranking of version ``ranked_by``."""
    rows = [StrategyPick(project=project, sample_id=int(sample_id), arm=arm, ranked_by=ranked_by)
            for sample_id, arm in zip(sample_ids, arms)]
    if rows:
        StrategyPick.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["sample"],
            update_fields=["arm", "ranked_by", "created_at"])


def strategy_mix_update(*, project: Project, classifier, featurizer) -> adaptive.Mix:
    """Measure the arms on the labels in so far, store and return the project's mix.

    ``classifier`` is the served model without its featurizer (cloned and refitted here,
    never changed) and ``featurizer`` the fitted one (or None: the input is the features).
    Nothing new since the last measurement, no held-out label yet, or an arm without a
    labeled pick in the window: the mix stays as it is.
    """
    row, _created = StrategyMix.objects.get_or_create(project=project)
    mix = adaptive.Mix.from_json(row.state)
    pool = sorted(labeled_samples(project=project, split=Sample.Split.POOL, payloads=False),
                  key=lambda item: item[2])
    if not pool or (row.measured_through_label_id is not None
                    and pool[-1][2] <= row.measured_through_label_id):
        return mix
    started = time.perf_counter()
    newest = pool[-1][2]
    test = labeled_samples(project=project, split=Sample.Split.TEST, payloads=False)
    ids = np.fromiter((sample.pk for sample, _v, _id in pool), dtype=np.int64, count=len(pool))
    arm_by_id = dict(StrategyPick.objects.filter(project=project, sample_id__in=ids.tolist())
                     .values_list("sample_id", "arm"))
    arm_of = np.asarray([arm_by_id.get(int(i), "") for i in ids], dtype=object)
    order = np.arange(len(ids))
    recent = adaptive.window(order)
    older = order[: len(order) - len(recent)]
    picks = {arm: recent[arm_of[recent] == arm] for arm in adaptive.ARMS}
    if test and len(older) and all(len(p) for p in picks.values()):
        y = np.asarray([value for _s, value, _id in pool])
        y_test = np.asarray([value for _s, value, _id in test])
        test_ids = np.fromiter((s.pk for s, _v, _id in test), dtype=np.int64, count=len(test))
        X = model_input_of_ids(project=project, ids=np.concatenate([ids, test_ids]))
        if featurizer is not None:
            X = featurizer.transform(X)
        X_pool, X_test = X[: len(ids)], X[len(ids):]

        def score_with(rows):
            kept = np.concatenate([older, rows])
            if len(set(y[kept])) < 2:
                return (y_test == y[kept][0]).astype(float)
            with threadpool_limits(1):
                fitted = clone(classifier).fit(X_pool[kept], y[kept])
            return adaptive.test_scores(fitted, X_test, y_test)

        mix = adaptive.measure(
            mix, picks=picks, base=score_with(np.empty(0, dtype=np.int64)),
            score_with=score_with, labels=len(ids), rng=np.random.default_rng(newest))
    seconds = time.perf_counter() - started
    with transaction.atomic():
        current = StrategyMix.objects.select_for_update().get(pk=row.pk)
        if (current.measured_through_label_id is not None
                and current.measured_through_label_id >= newest):
            return adaptive.Mix.from_json(current.state)  # another ranking measured as much
        current.state = mix.to_json()
        current.measured_through_label_id = newest
        current.measure_seconds = seconds
        current.save()
    logger.info("%s: strategy mix %s after %d labels (%.2fs)", project, mix.shares, len(ids),
                seconds)
    return mix
