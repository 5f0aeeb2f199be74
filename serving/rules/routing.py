"""Route production inputs to annotators: the most informative recent predictions whose
instance was kept become unlabeled pool samples (``origin=production``) with the prediction
that was made; their log rows point at the sample, so annotators' labels become the
predictions' true labels (``feedback_source=routed``: routed accuracy, never live accuracy).

A rule's ``random_share`` of the route is drawn first, uniformly at random from the served
version's predictions of the window, the routed ones included (they are only marked: the
most informative are the hardest, and a draw that left them out would read high). Those
rows are ``sampled``; their labels count as live accuracy (``feedback_source=sampled``).
The drawn inputs not routed before become held-out test samples, not pool samples: an
unbiased sample of production is what the promotion check needs after a shift (the
imported test split only shows the old data), and since no version trains on them their
labels stay fair evidence about every later version (bench/production_loop.py
``--val pre --test-share``)."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import orjson
from django.db.models import Count, Q

from annotation.images import content_sha256
from annotation.models import Label, Project, Sample
from annotation.services import RoutedInput, production_samples_route
from core.errors import DomainError
from learning.models import ModelVersion
from learning.strategies import uncertainty_scores
from serving import model_cache
from serving.instances import PAYLOADS, instance_payload, instances_featurize
from serving.models import PredictionLog
from serving.monitoring_selectors import WINDOWS

logger = logging.getLogger(__name__)

# How many recent kept predictions are scored to pick from.
CANDIDATES_MAX = 2000
# A random draw picks among at most this many of the window's newest predictions.
DRAW_MAX = 200_000


@dataclass(frozen=True)
class Routed:
    sample_ids: list[int]
    notes: list[str]


def _candidates(project: Project, since: dt.datetime):
    return PredictionLog.objects.filter(
        project=project, outcome=PredictionLog.Outcome.OK, created_at__gte=since,
        sample_id__isnull=True, feedback_at__isnull=True, model_version__isnull=False)


def _key(instance: dict) -> str:
    return hashlib.sha256(orjson.dumps(instance, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _image_digest(project: Project, instance: dict) -> str | None:
    """The sha256 of the image file a routed input would be stored as (None: unreadable)."""
    try:
        return content_sha256(PAYLOADS[Project.Kind.IMAGE](project, instance).image)
    except (DomainError, TypeError, ValueError):
        return None


def _known(project: Project, logs: list[PredictionLog]) -> set[str]:
    """Keys of candidates whose input is a sample of the project already: the same text,
    the same row, or an image file with the same bytes (by content sha256)."""
    if project.kind == Project.Kind.IMAGE:
        digests = {_key(log.instance): _image_digest(project, log.instance) for log in logs}
        found = set(Sample.objects.filter(project=project, content_sha256__in=set(
            digests.values()) - {None}).values_list("content_sha256", flat=True))
        return {key for key, digest in digests.items() if digest in found}
    if project.kind == Project.Kind.TEXT:
        texts = {log.instance.get("text") for log in logs}
        found = set(Sample.objects.filter(project=project, text__in=texts - {None})
                    .values_list("text", flat=True))
        return {_key(log.instance) for log in logs if log.instance.get("text") in found}
    if project.kind == Project.Kind.TABULAR:
        found = Sample.objects.filter(project=project, values__in=[log.instance for log in logs])
        seen = {_key(row) for row in found.values_list("values", flat=True)
                if isinstance(row, dict)}
        return {_key(log.instance) for log in logs if _key(log.instance) in seen}
    return set()


def _scored(project: Project, logs: list[PredictionLog]):
    """Scores (higher: ask first) under the project's strategy and the served model's
    predicted class per log, skipping instances the model can no longer read."""
    try:
        model = model_cache.served_model(project_id=project.pk)
    except DomainError:
        model = None
    usable, rows = [], None
    if model is not None:
        try:
            rows = instances_featurize(project=project, instances=[log.instance for log in logs])
            usable = list(logs)
        except DomainError:  # one bad instance: featurize them one by one
            parts = []
            for log in logs:
                try:
                    parts.append(instances_featurize(project=project, instances=[log.instance]))
                    usable.append(log)
                except DomainError:
                    continue
            rows = _stack(parts) if parts else None
    if model is None or rows is None:  # no model to ask: the logged confidence decides
        return logs, np.array([1.0 - (log.confidence or 0.0) for log in logs]), \
            [log.predicted_label for log in logs]
    strategy = project.query_strategy
    scores = uncertainty_scores(model.estimator, rows, strategy=strategy, seed=len(usable))
    predicted = [str(c) for c in model.estimator.predict(rows)]
    return usable, np.asarray(scores, dtype=np.float64), predicted


def _stack(parts):
    if isinstance(parts[0], list):
        return [row for part in parts for row in part]
    if hasattr(parts[0], "iloc"):
        import pandas as pd
        return pd.concat(parts, ignore_index=True)
    if hasattr(parts[0], "tocsr"):
        import scipy.sparse as sp
        return sp.vstack(parts).tocsr()
    return np.vstack(parts)


def spread_over_classes(scores, predicted, k: int) -> list[int]:
    """Indices of ``k`` inputs: the most informative of each predicted class in turn
    (classes ordered by their best score), so one class cannot take the whole batch.

    The alternatives were measured on bench/production_loop.py's stream at 5 seeds: k-means
    diversity over the most uncertain inputs, 10-30% random picks mixed in, or the top k
    by score alone needed more labels to recover from the shift (or never recovered); a
    per-class quota by uncertainty mass did as well as this, no better."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for i in np.argsort(-scores, kind="stable"):
        by_class[predicted[i]].append(int(i))
    queues = sorted(by_class.values(), key=lambda idx: -scores[idx[0]])
    picked: list[int] = []
    while len(picked) < k and any(queues):
        for queue in queues:
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return picked


def _draw(project: Project, since: dt.datetime, m: int) -> tuple[list[PredictionLog], list[str]]:
    """Draw ``m`` of the served version's predictions since ``since`` uniformly at random
    (not drawn before, no client feedback, instance kept or routed already) and mark them
    ``sampled``. A routed one keeps its sample (a label it has counts as live accuracy from
    now on); the others are returned, to be routed."""
    if m <= 0:
        return [], []
    served = ModelVersion.objects.filter(project=project, is_served=True).first()
    if served is None:
        return [], ["nothing drawn at random: no served model"]
    pool = (PredictionLog.objects.filter(project=project, outcome=PredictionLog.Outcome.OK,
                                         created_at__gte=since, model_version=served,
                                         sampled=False)
            .exclude(feedback_source=PredictionLog.FeedbackSource.CLIENT)
            .filter(Q(instance__isnull=False) | Q(sample_id__isnull=False)))
    ids = list(pool.order_by("-created_at").values_list("pk", flat=True)[:DRAW_MAX])
    if not ids:
        return [], [f"nothing drawn at random: no prediction of v{served.number} to draw"]
    rng = np.random.default_rng()
    chosen = [ids[i] for i in rng.choice(len(ids), size=min(m, len(ids)), replace=False)]
    drawn = PredictionLog.objects.filter(pk__in=chosen)
    drawn.update(sampled=True)
    drawn.filter(feedback_source=PredictionLog.FeedbackSource.ROUTED).update(
        feedback_source=PredictionLog.FeedbackSource.SAMPLED)
    fresh = list(drawn.filter(sample_id__isnull=True).order_by("-created_at"))
    return fresh, [f"drew {len(chosen)} of {len(ids)} prediction(s) of v{served.number} at "
                   f"random for live accuracy and the promotion check "
                   f"({len(chosen) - len(fresh)} routed already)"]


def route_inputs(*, project: Project, k: int, window: str, now: dt.datetime,
                 random_share: float = 0.0) -> Routed:
    """Route up to ``k`` recent production inputs (within ``window``) to annotators: first
    ``random_picks(k, random_share)`` drawn at random (see ``_draw``), then the most
    informative of the rest."""
    since = now - WINDOWS[window].span
    recent = _candidates(project, since)
    counts = recent.aggregate(kept=Count("pk", filter=Q(instance__isnull=False)),
                              lost=Count("pk", filter=Q(instance__isnull=True)))
    notes = []
    if counts["lost"]:
        notes.append(f"{counts['lost']} recent input(s) could not be routed: their instance "
                     "was not kept (larger than PREDICTION_LOG_INSTANCE_MAX_BYTES)")
    drawn, drawn_notes = _draw(project, since, random_picks(k, random_share))
    notes.extend(drawn_notes)
    drawn_ids = {log.pk for log in drawn}
    logs = drawn + [log for log in recent.filter(instance__isnull=False)
                    .order_by("-created_at")[:CANDIDATES_MAX] if log.pk not in drawn_ids]
    unique, seen = [], _known(project, logs) if logs else set()
    duplicates = 0
    for log in logs:
        key = _key(log.instance)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append(log)
    if duplicates:
        notes.append(f"{duplicates} duplicate input(s) left out")
    if not unique:
        notes.append("no recent production input to route")
        return Routed([], notes)
    chosen = [log for log in unique if log.pk in drawn_ids][:k]
    rest = [log for log in unique if log.pk not in drawn_ids]
    if rest and len(chosen) < k:
        usable, scores, predicted = _scored(project, rest)
        chosen += [usable[i] for i in spread_over_classes(scores, predicted, k - len(chosen))]
    inputs, taken = [], []
    for log in chosen:
        try:
            payload = instance_payload(project=project, instance=log.instance)
        except DomainError as exc:
            notes.append(f"prediction {log.prediction_id} left out: {exc}")
            continue
        version = log.model_version.number if log.model_version_id else None
        inputs.append(RoutedInput(payload=payload, label=log.predicted_label,
                                  confidence=log.confidence, version=version,
                                  held_out=log.pk in drawn_ids))
        taken.append(log)
    samples = production_samples_route(project=project, inputs=inputs)
    for log, sample in zip(taken, samples):
        # The sample holds the instance now; the row keeps the prediction, awaiting a label.
        PredictionLog.objects.filter(pk=log.pk).update(sample_id=sample.pk, instance=None)
    at_random = sum(log.pk in drawn_ids for log in taken)
    notes.insert(0, f"routed {len(samples)} of {len(unique)} recent input(s)"
                    + (f": {at_random} drawn at random (held-out test samples), the rest"
                       if drawn_ids else ",")
                    + f" by the {project.query_strategy} strategy, spread over predicted classes")
    return Routed([s.pk for s in samples], notes)


ROUTED, SAMPLED = PredictionLog.FeedbackSource.ROUTED, PredictionLog.FeedbackSource.SAMPLED


def routed_feedback_sync(*, now: dt.datetime) -> int:
    """Routed predictions whose sample is labeled get its label as their feedback (true
    label, and the label's time, ``feedback_source=routed``): counted as routed accuracy,
    apart from the clients' live accuracy, which these uncertain picks would bias low; or
    ``sampled`` for those drawn at random, which live accuracy counts. Returns how many."""
    logs = list(PredictionLog.objects.filter(sample_id__isnull=False, feedback_at__isnull=True)
                .filter(sample__status=Sample.Status.LABELED)
                .values_list("pk", "sample_id", "sampled")[:5000])
    if not logs:
        return 0
    labels: dict[int, list[Label]] = defaultdict(list)
    for label in Label.objects.current().filter(sample_id__in=[s for _pk, s, _d in logs]):
        labels[label.sample_id].append(label)
    done = 0
    for pk, sample_id, sampled in logs:
        given = labels.get(sample_id)
        if not given:
            continue
        values = [label.value for label in given]
        value = max(sorted(set(values)), key=values.count)  # the majority; ties by name
        at = max(label.created_at for label in given)
        done += PredictionLog.objects.filter(pk=pk, feedback_at__isnull=True).update(
            true_label=value, feedback_at=at, feedback_source=SAMPLED if sampled else ROUTED)
    return done


def random_picks(k: int, share: float) -> int:
    """How many of a route of ``k`` are drawn at random: ``share`` of them, rounded, at
    least one when the share is above 0."""
    if k <= 0 or share <= 0:
        return 0
    return min(k, max(1, round(k * share)))
