"""The adaptive default in the service: picks are recorded with their arm, the mix is
measured when their labels are in, and its state persists across retrains."""
import math

import numpy as np
import pytest
from django.urls import reverse

from annotation.models import Project, Sample
from learning.models import StrategyMix, StrategyPick
from learning.services import model_version_request, model_version_train, pool_score
from tests.factories import label_given

WORDS = {"spam": "win prize cash free offer bonus".split(),
         "ham": "meeting lunch report team notes agenda".split()}


def _train_and_rank(project):
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    pool_score(project=project, version=version)  # the synchronous rescoring and ranking
    return version


def _text(rng, label):
    other = "ham" if label == "spam" else "spam"
    words = list(rng.choice(WORDS[label], 3)) + list(rng.choice(WORDS[other], 1))
    return " ".join(words)


@pytest.fixture
def default_project(db, project, annotator):
    project.kind = Project.Kind.TEXT
    project.labels = ["spam", "ham"]
    project.batch_size = 20
    project.query_strategy = "default"
    project.save()
    rng = np.random.default_rng(0)
    for i in range(40):
        label = "spam" if i % 2 else "ham"
        split = Sample.Split.TEST if i >= 24 else Sample.Split.POOL
        sample = Sample.objects.create(project=project, text=_text(rng, label), split=split)
        label_given(sample=sample, annotator=annotator, value=label)
    for i in range(120):
        label = "spam" if i % 2 else "ham"
        Sample.objects.create(project=project, text=_text(rng, label), external_id=label)
    project.batch_size = 1000  # retrains are requested by the test
    project.save()
    return project


def _label_picks(project, annotator, n):
    picks = list(StrategyPick.objects.filter(project=project, sample__status="unlabeled")
                 .select_related("sample").order_by("-sample__score")[:n])
    for pick in picks:
        label_given(sample=pick.sample, annotator=annotator, value=pick.sample.external_id)
    return picks


def test_the_mix_is_recorded_measured_and_kept_across_retrains(default_project, annotator,
                                                                client, monkeypatch):
    from learning import strategies

    project = default_project
    monkeypatch.setattr(strategies, "DIVERSE_MAX_PICKS", 20)  # a head of 20 per ranking
    _train_and_rank(project)
    picks = StrategyPick.objects.filter(project=project)
    assert picks.count() == 20
    assert set(picks.values_list("arm", flat=True)) == {"margin", "random"}
    assert Sample.objects.filter(pk__in=picks.values("sample"), score__gt=1).count() == 20
    first = StrategyMix.objects.get(project=project)
    assert first.state.get("measurements", 0) == 0  # nothing of theirs labeled yet

    _label_picks(project, annotator, 20)
    _train_and_rank(project)
    second = StrategyMix.objects.get(project=project)
    assert second.state["measurements"] == 1
    assert second.measured_through_label_id > (first.measured_through_label_id or 0)
    assert second.state["history"][-1]["labels"] == 24 + 20

    _label_picks(project, annotator, 20)
    _train_and_rank(project)
    third = StrategyMix.objects.get(project=project)
    # The second measurement built on the first's stored evidence, not on a fresh mix.
    assert third.state["measurements"] == 2
    assert third.state["weight2"] == pytest.approx(0.85 ** 2 + 1.0)
    assert [h["labels"] for h in third.state["history"]] == [44, 64]

    # A ranking with nothing newly labeled measures nothing again.
    _train_and_rank(project)
    assert StrategyMix.objects.get(project=project).state["measurements"] == 2

    client.force_login(project.owner)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert 'id="strategy-mix"' in page and "points per 100 labels" in page
    assert "2 measurements" in page
    # The page says how big the last measurement was and what the evidence means.
    last = third.state["history"][-1]
    assert (f"({last['k']} pick{'s' if last['k'] != 1 else ''} of each, compared on "
            f"{last['test']} held-out label") in page
    probability = round(50 * (1 + math.erf(third.state["z"] / math.sqrt(2))))
    assert f"z = {round(third.state['z'], 2)}, so margin gains more with a probability of " \
           f"about {probability}%" in page


def test_other_strategies_record_no_picks_and_show_no_mix(default_project, client):
    project = default_project
    project.query_strategy = "diverse_margin"
    project.save()
    _train_and_rank(project)
    assert not StrategyPick.objects.exists() and not StrategyMix.objects.exists()
    client.force_login(project.owner)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert 'id="strategy-mix"' not in page
