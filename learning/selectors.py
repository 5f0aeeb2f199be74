"""Reads of model versions for pages and APIs: the list, the served one, staleness, the
health of the retrain cycle and its alerts."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from annotation.models import Label, Project
from learning.cycle_health import (
    active_versions,
    clock,
    last_sign_of_scoring,
    scoring_lost,
    version_alive,
)
from learning import adaptive
from learning.models import Alert, ModelVersion, StrategyMix


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    """Return the project's versions, newest first."""
    return ModelVersion.objects.filter(project=project).order_by("-number")


def model_version_served(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_served=True).first()


def model_version_served_summary(*, project: Project) -> ModelVersion | None:
    """The served version with only its number and accuracy loaded: what annotation's
    ``served_model`` hook answers, once per label on the Python path, without the metrics."""
    return (ModelVersion.objects.filter(project=project, is_served=True)
            .only("id", "number", "accuracy").first())


def retrain_batch_start(*, project: Project) -> int:
    """The newest version's ``requested_at_label_count``: where the current batch began."""
    return (
        ModelVersion.objects.filter(project=project).order_by("-number")
        .values_list("requested_at_label_count", flat=True).first()
    ) or 0


@dataclass(frozen=True)
class Staleness:
    """How far the queue's order lags the labels: labels added since the ranking model."""

    version: int | None  # the version that ordered the queue, None before any
    labels_since: int
    scoring: bool  # a rescoring is under way


def ranking_staleness(*, project: Project) -> Staleness:
    """Return how many current labels arrived after the last training label of the version
    that ordered the queue: the scorer of the newest finished rescoring (the newest ready
    version, promoted or not, since every ready version rescores the pool itself)."""
    scoring = ModelVersion.objects.filter(
        project=project, score_chunks_total__isnull=False, scored_sample_count__isnull=True,
        status=ModelVersion.Status.READY,
    ).exists()
    rescored = (ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY,
                                            scored_sample_count__isnull=False)
                .select_related("scored_by").order_by("-number").first())
    ranker = (rescored.scored_by or rescored) if rescored is not None else None
    labels = Label.objects.current().filter(sample__project=project)
    if ranker is None or ranker.last_label_id is None:
        return Staleness(version=None, labels_since=labels.count(), scoring=scoring)
    return Staleness(version=ranker.number, scoring=scoring,
                     labels_since=labels.filter(pk__gt=ranker.last_label_id).count())


@dataclass(frozen=True)
class CycleNote:
    text: str
    stuck: bool  # a warning: the cycle waits on something that is not happening


def retrain_cycle_notes(*, project: Project) -> list[CycleNote]:
    """What the project's retrain cycle is doing, and where it is stuck: a queued version
    that never reached the broker or that no worker took, a training or rescoring whose
    worker went silent. Read with the rules the sweeper heals by (``cycle_health``)."""
    now = timezone.now()
    waiting_before = now - dt.timedelta(seconds=settings.RETRAIN_REDISPATCH_SECONDS)
    notes: list[CycleNote] = []
    running = None
    for v in active_versions(project.pk).order_by("number"):
        if v.status == ModelVersion.Status.TRAINING:
            if not version_alive(v, now):
                notes.append(CycleNote(
                    f"v{v.number} training, but its worker has not been heard from since "
                    f"{clock(v.heartbeat_at or v.started_at)}: it will be re-queued", True))
            else:
                running = f"v{v.number} training (attempt {v.attempts})"
                notes.append(CycleNote(f"{running} since {clock(v.started_at)}", False))
        elif v.status == ModelVersion.Status.READY:
            left = f"{v.score_chunks_done} of {v.score_chunks_total} chunks done"
            if scoring_lost(v, now):
                notes.append(CycleNote(
                    f"pool rescoring for v{v.number} ({left}) has had no worker since "
                    f"{clock(last_sign_of_scoring(v))}: its chunks will be sent again", True))
            else:
                running = f"v{v.number} rescoring the pool"
                notes.append(CycleNote(f"{running} ({left})", False))
        else:
            queued_at = v.queued_at or v.created_at
            since = clock(queued_at)
            if v.dispatched_at is None:
                notes.append(CycleNote(
                    f"v{v.number} queued since {since}, but the broker could not be reached: "
                    "no worker has it yet; it is sent again when the broker is back", True))
            elif running is not None:
                notes.append(CycleNote(f"v{v.number} queued since {since}, after {running}", False))
            elif queued_at < waiting_before:
                notes.append(CycleNote(
                    f"v{v.number} waiting for a worker since {since}; no worker has taken it "
                    f"(sent {v.dispatch_count} time{'s' if v.dispatch_count != 1 else ''}). "
                    "Is a worker running?", True))
            else:
                notes.append(CycleNote(f"v{v.number} queued since {since}", False))
    return notes


def alert_list(*, project: Project, limit: int = 5) -> list[Alert]:
    """The project's open alerts, then those resolved in the last day; newest first."""
    day_ago = timezone.now() - dt.timedelta(days=1)
    return list(
        Alert.objects.filter(project=project)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=day_ago))
        .select_related("version")
        .order_by(F("resolved_at").asc(nulls_first=True), "-last_seen_at")[:limit]
    )


@dataclass(frozen=True)
class ArmSummary:
    name: str
    share: int  # percent of the next batch's ranked head
    # Test-accuracy points per 10 labels (the discounted mean of the measured per-label
    # gains, times 10): a rate at the labels measured, not a forecast; None before any.
    gain: float | None


# The project page calls the arm with the larger share "winning" only at this probability
# (of margin gaining more, or of random gaining more); before, it is "ahead".
SURE_PERCENT = 90


@dataclass(frozen=True)
class StrategyMixSummary:
    arms: list[ArmSummary]
    winner: str | None  # None until the arms were measured once
    measurements: int
    labels: int | None  # pool labels at the last measurement
    evidence: float  # the mix's z: how sure it is that margin gains more than random
    seconds: float | None  # time the last measurement took
    # The evidence as a percentage: the normal probability of z, i.e. how likely it is,
    # on the measurements so far, that margin really gains more than random.
    margin_better: int
    margin_better_text: str  # "about 81%", or "over 99%" / "under 1%" at the ends
    # Whether the evidence is strong enough to call the arm with the larger share the
    # winner: the probability above is at least SURE_PERCENT or at most 100 minus it.
    sure: bool
    picks: int | None  # picks of each arm the last measurement added (its k)
    test_labels: int | None  # held-out labels the last measurement compared on


def strategy_mix_summary(*, project: Project) -> StrategyMixSummary | None:
    """The adaptive default's current mix and what it measured; None for other strategies."""
    if project.query_strategy != "default":
        return None
    row = StrategyMix.objects.filter(project=project).first()
    mix = adaptive.Mix.from_json(row.state if row else None)
    measured = mix.measurements > 0
    arms = [ArmSummary(name=arm, share=round(100 * mix.shares.get(arm, 0.0)),
                       gain=round(mix.gains.get(arm, 0.0) * 1_000, 2) if measured else None)
            for arm in adaptive.ARMS]
    last = mix.history[-1] if mix.history else {}
    margin_better = 0.5 * (1.0 + math.erf(mix.z / math.sqrt(2.0)))
    return StrategyMixSummary(
        arms=sorted(arms, key=lambda a: -a.share), winner=mix.winner,
        measurements=mix.measurements, labels=last.get("labels"),
        evidence=round(mix.z, 2), seconds=row.measure_seconds if row else None,
        margin_better=round(100 * margin_better),
        margin_better_text=("over 99%" if margin_better > 0.99 else "under 1%"
                            if margin_better < 0.01 else f"about {round(100 * margin_better)}%"),
        sure=measured and max(margin_better, 1.0 - margin_better) >= SURE_PERCENT / 100,
        picks=last.get("k"), test_labels=last.get("test"),
    )
