"""Browser tests of the labeling page: keyboard labeling swaps samples in through htmx."""
import pytest
from django.urls import reverse

from annotation.models import Label, Sample
from tests.factories import ProjectFactory

CARD_SHOWS_NEW_SAMPLE = """prev => {
  const card = document.querySelector('#sample-card');
  return !!card && !!card.dataset.sample && card.dataset.sample !== prev;
}"""
CARD_IMAGE_LOADED = """() => {
  const img = document.querySelector('#sample-card figure.sample img');
  return !!img && img.complete && img.naturalWidth > 0;
}"""


@pytest.fixture
def project(db):
    # batch_size well above the labels these tests submit: no retrain is requested.
    return ProjectFactory(labels=["0", "1", "2"], batch_size=50, image_size=8)


@pytest.fixture
def label_path(project):
    return reverse("label", args=[project.slug])


def _shown_sample(page) -> str:
    return page.locator("#sample-card").get_attribute("data-sample")


def _watch_reloads(page) -> list[str]:
    """Record every navigation of the page's main frame from now on."""
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    return navigations


@pytest.mark.e2e
def test_keyboard_labeling_swaps_samples_without_reload(
    page, login, project, annotator, make_samples, label_path
):
    make_samples(10, n_test=2)
    login(annotator)
    page.goto(label_path)
    first = _shown_sample(page)
    assert first, "the labeling page shows no sample"
    page.evaluate("window.__noReload = 42")
    navigations = _watch_reloads(page)
    posts = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)

    keys = ["1", "0", "2", "1", "0"]
    shown = [first]
    for key in keys:
        page.keyboard.press(key)
        page.wait_for_function(CARD_SHOWS_NEW_SAMPLE, arg=shown[-1])
        shown.append(_shown_sample(page))

    assert len(set(shown)) == len(shown), f"a sample was shown twice: {shown}"
    assert page.evaluate("window.__noReload") == 42, "the page reloaded"
    assert navigations == [], f"the page navigated: {navigations}"
    assert page.url.endswith(label_path)
    assert len(posts) == len(keys)
    assert all(post.headers.get("hx-request") == "true" for post in posts), "not htmx requests"

    page.wait_for_function(CARD_IMAGE_LOADED)
    assert page.locator("#sample-card img").get_attribute("alt") == f"sample {shown[-1]}"
    assert "5 / 12 labeled" in page.locator("#sample-card .progress-row").inner_text()

    labels = list(Label.objects.filter(annotator=annotator, sample__project=project))
    assert sorted((label.sample_id, label.value) for label in labels) == sorted(
        zip(map(int, shown[:-1]), keys)
    )
    assert all(label.duration_ms is not None and label.duration_ms >= 0 for label in labels)
    current = Sample.objects.get(pk=int(shown[-1]))
    assert current.status != Sample.Status.LABELED
    assert current.leased_by_id == annotator.pk


@pytest.mark.e2e
def test_invalid_label_shows_error_and_keeps_sample(
    page, login, project, annotator, make_samples, label_path
):
    make_samples(3)
    login(annotator)
    page.goto(label_path)
    sample = _shown_sample(page)
    assert sample
    page.evaluate("window.__noReload = 42")

    page.evaluate("document.querySelector('#label-form button[data-key=\"1\"]').value = 'bogus'")
    with page.expect_response(lambda response: response.request.method == "POST"):
        page.click('#label-form button[data-key="1"]')
    error = page.locator("#sample-card .error")
    error.wait_for(state="visible")
    assert "bogus" in error.inner_text()
    assert not Label.objects.filter(sample__project=project).exists()
    # Nothing lost: the same sample is still on the card, and labeling it still works.
    assert _shown_sample(page) == sample
    assert page.evaluate("window.__noReload") == 42

    page.keyboard.press("2")
    page.wait_for_function(CARD_SHOWS_NEW_SAMPLE, arg=sample)
    assert page.locator("#sample-card .error").count() == 0
    assert list(Label.objects.values_list("sample_id", "value")) == [(int(sample), "2")]


@pytest.mark.e2e
def test_anonymous_user_is_redirected_to_login(page, project, label_path):
    page.goto(label_path)
    assert page.url.endswith(f"{reverse('login')}?next={label_path}")
    assert page.locator("input[name=username]").is_visible()
    assert page.locator("#sample-card").count() == 0
