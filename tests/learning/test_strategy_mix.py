"""The adaptive default in the service: picks are recorded with their arm, the mix is
measured when their labels are in, and its state persists across retrains."""
import math

import pytest
from django.urls import reverse

from annotation.models import Sample
from learning.models import StrategyMix, StrategyPick
# default_project is a fixture: imported, pytest finds it by name in this module.
from tests.strategy_mix_setup import default_project, label_picks, train_and_rank  # noqa: F401


def test_the_mix_is_recorded_measured_and_kept_across_retrains(default_project, annotator,
                                                                client, monkeypatch):
    from learning import strategies

    project = default_project
    monkeypatch.setattr(strategies, "DIVERSE_MAX_PICKS", 20)  # a head of 20 per ranking
    train_and_rank(project)
    picks = StrategyPick.objects.filter(project=project)
    assert picks.count() == 20
    assert set(picks.values_list("arm", flat=True)) == {"margin", "random"}
    assert Sample.objects.filter(pk__in=picks.values("sample"), score__gt=1).count() == 20
    first = StrategyMix.objects.get(project=project)
    assert first.state.get("measurements", 0) == 0  # nothing of theirs labeled yet

    label_picks(project, annotator, 20)
    train_and_rank(project)
    second = StrategyMix.objects.get(project=project)
    assert second.state["measurements"] == 1
    assert second.measured_through_label_id > (first.measured_through_label_id or 0)
    assert second.state["history"][-1]["labels"] == 24 + 20

    label_picks(project, annotator, 20)
    train_and_rank(project)
    third = StrategyMix.objects.get(project=project)
    # The second measurement built on the first's stored evidence, not on a fresh mix.
    assert third.state["measurements"] == 2
    assert third.state["weight2"] == pytest.approx(0.85 ** 2 + 1.0)
    assert [h["labels"] for h in third.state["history"]] == [44, 64]

    # A ranking with nothing newly labeled measures nothing again.
    train_and_rank(project)
    assert StrategyMix.objects.get(project=project).state["measurements"] == 2

    client.force_login(project.owner)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert 'id="strategy-mix"' in page and "points per 10 labels" in page
    assert "2 measurements" in page
    # The page says how big the last measurement was and what the evidence means.
    last = third.state["history"][-1]
    assert (f"({last['k']} pick{'s' if last['k'] != 1 else ''} of each, compared on "
            f"{last['test']} held-out label") in page
    probability = 0.5 * (1 + math.erf(third.state["z"] / math.sqrt(2)))
    said = ("over 99%" if probability > 0.99 else "under 1%" if probability < 0.01
            else f"about {round(100 * probability)}%")
    assert f"z = {round(third.state['z'], 2)}, so margin gains more with a probability of " \
           f"{said}" in page


def test_other_strategies_record_no_picks_and_show_no_mix(default_project, client):
    project = default_project
    project.query_strategy = "diverse_margin"
    project.save()
    train_and_rank(project)
    assert not StrategyPick.objects.exists() and not StrategyMix.objects.exists()
    client.force_login(project.owner)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert 'id="strategy-mix"' not in page


@pytest.mark.parametrize("z, winner, sure", [
    (2.0, "margin", True),     # 98% sure margin gains more
    (1.2, "margin", False),    # 88%: the larger share, not yet a winner
    (-0.3, "random", False),
    (-1.5, "random", True),    # 93% sure random gains more
    (3.2, "margin", True),     # 99.93%: "over 99%", never a rounded "100%"
    (-2.5, "random", True),
])
def test_the_summary_calls_an_arm_winning_only_on_evidence_90_percent_sure(
        project, z, winner, sure):
    from learning import adaptive
    from learning.selectors import strategy_mix_summary

    mix = adaptive.Mix(z=z, shares=adaptive.shares_from(z), measurements=3,
                       history=[{"labels": 80, "k": 12, "test": 20}])
    project.query_strategy = "default"
    project.save()
    StrategyMix.objects.create(project=project, state=mix.to_json())
    summary = strategy_mix_summary(project=project)
    assert summary.winner == winner and summary.sure is sure
    probability = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert summary.margin_better == round(100 * probability)
    assert summary.margin_better_text == {3.2: "over 99%", -2.5: "under 1%"}.get(
        z, f"about {round(100 * probability)}%")
    assert (summary.labels, summary.picks, summary.test_labels) == (80, 12, 20)


def test_the_summary_is_never_sure_before_a_measurement(project):
    from learning.selectors import strategy_mix_summary

    project.query_strategy = "default"
    project.save()
    summary = strategy_mix_summary(project=project)
    assert summary.winner is None and not summary.sure and summary.margin_better == 50
