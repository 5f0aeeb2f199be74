"""Browser tests of the labeling page: keyboard labeling swaps samples in through htmx."""
import pytest
from django.urls import reverse

from annotation import hooks
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
    # No model yet: no version served, no suggestion shown.
    assert {(label.served_version, label.suggested_version) for label in labels} == {(None, None)}
    current = Sample.objects.get(pk=int(shown[-1]))
    assert current.status != Sample.Status.LABELED
    assert current.leases.get().annotator_id == annotator.pk


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


@pytest.mark.e2e
def test_skip_undo_help_and_zoom_keys_work_without_reload(
    page, login, project, annotator, make_samples, label_path
):
    make_samples(6)
    login(annotator)
    page.goto(label_path)
    page.evaluate("window.__noReload = 42")
    navigations = _watch_reloads(page)
    first = _shown_sample(page)

    page.keyboard.press("s")
    page.wait_for_function(CARD_SHOWS_NEW_SAMPLE, arg=first)
    second = _shown_sample(page)
    assert Sample.objects.get(pk=int(first)).leases.get(annotator=annotator).skipped

    page.keyboard.press("2")
    page.wait_for_function(CARD_SHOWS_NEW_SAMPLE, arg=second)
    third = _shown_sample(page)
    assert third not in (first, second)

    page.keyboard.press("u")
    page.wait_for_function(CARD_SHOWS_NEW_SAMPLE, arg=third)
    assert _shown_sample(page) == second  # the undone sample is back on screen
    assert not Label.objects.current().filter(annotator=annotator).exists()
    assert Label.objects.filter(annotator=annotator, superseded_at__isnull=False).count() == 1

    page.keyboard.press("0")
    page.wait_for_function(CARD_SHOWS_NEW_SAMPLE, arg=second)
    assert _shown_sample(page) == third  # then the one that was showing before the undo

    help_dialog = page.locator("#keys-help")
    assert not help_dialog.is_visible()
    page.keyboard.press("?")
    help_dialog.wait_for(state="visible")
    assert "skip this sample" in help_dialog.inner_text()
    page.keyboard.press("1")  # keys do not label while the list is open
    page.keyboard.press("Escape")
    help_dialog.wait_for(state="hidden")
    assert _shown_sample(page) == third

    page.wait_for_function(CARD_IMAGE_LOADED)
    figure = page.locator("#sample-card figure.sample")
    small = page.locator("#sample-card figure.sample img").bounding_box()["width"]
    page.keyboard.press("z")
    page.wait_for_function("() => document.querySelector('#sample-card figure.sample img').getBoundingClientRect().width > 400")
    assert "zoomed" in figure.get_attribute("class")
    page.locator("#sample-card figure.sample img").click()  # click toggles back
    page.wait_for_function(f"() => document.querySelector('#sample-card figure.sample img').getBoundingClientRect().width <= {small + 1}")

    assert page.evaluate("window.__noReload") == 42
    assert navigations == []
    assert list(Label.objects.current().filter(annotator=annotator).values_list("sample_id", "value")) == [
        (int(second), "0")]


@pytest.mark.e2e
def test_suggestion_loads_after_the_card_and_next_image_is_prefetched(
    page, login, project, annotator, make_samples, label_path, monkeypatch
):
    from serving.suggestions import Suggestion
    from learning.models import ModelVersion

    project.test_fraction = 0.0
    project.save(update_fields=["test_fraction"])
    make_samples(4)
    ModelVersion.objects.create(project=project, number=1, status="ready", is_served=True,
                                accuracy=0.875)
    monkeypatch.setitem(hooks._registry, "suggestions", lambda *, project, samples: {
        samples[0].pk: Suggestion(label="2", confidence=0.93, model_version=1)})
    login(annotator)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(label_path)
    page.evaluate("window.__noReload = 42")
    first = _shown_sample(page)

    page.locator('#suggestion[data-label="2"]').wait_for()
    assert "93% sure" in page.locator("#suggestion").inner_text()
    assert "suggested" in page.locator('#label-form button[data-key="2"]').get_attribute("class")
    card_at = next(i for i, url in enumerate(requests) if url.endswith(label_path))
    hint_at = next(i for i, url in enumerate(requests) if url.endswith(f"/samples/{first}/suggestion"))
    assert hint_at > card_at  # a request of its own, after the card
    assert "test acc 0.88" in page.locator("#sample-card .progress-row").inner_text()

    following = page.locator("link[rel=prefetch]").get_attribute("data-following")
    assert following and following != first
    page.wait_for_function(
        "id => performance.getEntriesByType('resource').some(e => e.name.endsWith('/samples/' + id + '/image'))",
        arg=following,
    )
    page.keyboard.press("1")
    page.wait_for_function(CARD_SHOWS_NEW_SAMPLE, arg=first)
    assert _shown_sample(page) == following
    # The label records the served version and the version whose suggestion was shown.
    assert Label.objects.values_list("sample_id", "served_version", "suggested_version").get(
        annotator=annotator) == (int(first), 1, 1)
    page.wait_for_function(CARD_IMAGE_LOADED)
    page.locator('#suggestion[data-label="2"]').wait_for()
    assert page.evaluate("window.__noReload") == 42


@pytest.mark.e2e
def test_label_page_fits_a_laptop_screen(page, login, project, annotator, make_samples, label_path):
    make_samples(2)
    page.set_viewport_size({"width": 1366, "height": 768})
    login(annotator)
    page.goto(label_path)
    page.wait_for_function(CARD_IMAGE_LOADED)
    assert page.evaluate("document.documentElement.scrollHeight") <= 768
    page.keyboard.press("z")
    page.wait_for_function("() => document.querySelector('#sample-card figure.sample.zoomed')")
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollHeight") <= 768
