"""Browser test of the annotators page: the κ matrix renders at 1366×768 under the CSP."""
import os

import pytest

from tests.annotation.test_annotator_stats import data  # noqa: F401  the constructed dataset


@pytest.mark.e2e
def test_annotators_page_shows_kappa_at_laptop_size(page, login, data):  # noqa: F811
    project, _people, scientist, _samples = data
    page.set_viewport_size({"width": 1366, "height": 768})
    login(scientist)
    page.goto(f"/projects/{project.slug}/")
    with page.expect_navigation():
        page.click("#data-links >> text=Annotators")
    assert page.url.endswith(f"/projects/{project.slug}/annotators/")
    cells = page.locator('#kappa-matrix td[data-pair="alice|bob"]')
    assert cells.count() == 2  # the matrix is symmetric
    assert cells.first.locator("b").inner_text() == "0.40"  # hand-computed: p_o 2/3, p_e 4/9
    assert "n 3" in cells.first.inner_text()
    assert page.locator('#kappa-matrix td[data-pair="bob|carol"] b').first.inner_text() == "—"
    assert page.locator("#fleiss").inner_text().count("0.69") == 1
    # Nothing wider than the window: wide tables scroll inside their own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    # And at this size the pace table fits its box whole: no column scrolled out of sight.
    assert page.evaluate("""() => {
      const box = document.querySelector('#annotator-rows').parentElement;
      return box.scrollWidth <= box.clientWidth; }""")
    if os.environ.get("ANNOTATORS_SCREENSHOT"):
        page.screenshot(path=os.environ["ANNOTATORS_SCREENSHOT"], full_page=True)
    page.click("nav.windows >> text=24 h")
    assert page.url.endswith("?window=24h")
    assert page.locator("nav.windows a.current").inner_text() == "24 h"
