"""Browser test of the project page's strategy mix: after two measured retrains the page
shows each arm's share and gain, marks the arm with the larger share as winning, and says
why, in figures that match the stored mix."""
import math
import os

import pytest

from learning.models import StrategyMix
# default_project is a fixture: imported, pytest finds it by name in this module.
from tests.strategy_mix_setup import default_project, label_picks, train_and_rank  # noqa: F401


@pytest.mark.e2e
def test_the_project_page_shows_the_winning_arm_and_why(page, login, default_project,
                                                        annotator, monkeypatch):
    from learning import strategies

    project = default_project
    monkeypatch.setattr(strategies, "DIVERSE_MAX_PICKS", 20)  # a head of 20 per ranking
    train_and_rank(project)
    for _ in range(2):
        label_picks(project, annotator, 20)
        train_and_rank(project)
    state = StrategyMix.objects.get(project=project).state
    assert state["measurements"] == 2

    login(project.owner)
    page.goto(f"/projects/{project.slug}/")
    section = page.locator("#strategy-mix")
    assert section.is_visible()
    rows = section.locator("#strategy-arms tbody tr")
    assert rows.count() == 2
    shares = {}
    for i in range(2):
        name, share, gain = (rows.nth(i).locator("td").nth(j).inner_text() for j in range(3))
        arm = name.split()[0]
        shares[arm] = int(share.rstrip("%"))
        assert shares[arm] == round(100 * state["shares"][arm])
        expected_gain = round(state["gains"][arm] * 1_000, 2)
        sign = "+" if expected_gain >= 0 else ""
        assert gain == f"{sign}{expected_gain:.2f} points per 10 labels"
    assert sum(shares.values()) == 100
    # The arm with the larger share is "winning" only on evidence 90% sure, else "ahead".
    winner = max(shares, key=shares.get)
    probability = 0.5 * (1 + math.erf(state["z"] / math.sqrt(2)))
    sure = max(probability, 1 - probability) >= 0.9
    badge = section.locator("tr.winning .badge")
    assert badge.count() == 1 and badge.inner_text() == ("winning" if sure else "ahead")
    # Readable: its text is not drawn in its background's colour (the muted badge once was).
    color, background = badge.evaluate(
        "el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
    assert color != background, (color, background)
    assert section.locator("tr.winning td").first.inner_text().startswith(winner)

    why = section.locator("p.note").inner_text()
    last = state["history"][-1]
    assert why.startswith("Why:")
    assert f"2 measurements, the last at {last['labels']} labels" in why
    assert f"compared on {last['test']} held-out labels" in why
    said = ("over 99%" if probability > 0.99 else "under 1%" if probability < 0.01
            else f"about {round(100 * probability)}%")
    assert f"with a probability of {said}" in why

    if os.environ.get("STRATEGY_MIX_SCREENSHOT"):
        section.screenshot(path=os.environ["STRATEGY_MIX_SCREENSHOT"])
