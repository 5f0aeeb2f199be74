"""The version page: access, Promote / Roll back (POST with CSRF only), compare, curve."""
import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Label, Sample
from annotation.services.review import label_correct
from learning.curves import learning_curve, nice_step
from learning.models import ModelVersion, SimulationRun
from learning.services.comparison import version_compare
from tests.factories import MembershipFactory, UserFactory
from tests.serving.conftest import train_version


@pytest.fixture
def two_versions(labeled_project):
    """v1 on the true labels; v2 after every pool "0" was corrected to "1" (so v2 never
    predicts "0"); served: v2 (promotion policy latest)."""
    project = labeled_project
    project.promotion = "latest"
    project.save()
    v1 = train_version(project)
    for sample in Sample.objects.filter(project=project, split="pool"):
        if Label.objects.current().get(sample=sample).value == "0":
            label_correct(sample=sample, scientist=project.owner, value="1")
    v2 = train_version(project)
    assert (v1.status, v2.status) == ("ready", "ready") and v2.is_served
    return project, v1, v2


def _url(project, number, name="version-detail"):
    return reverse(name, args=[project.slug, number])


def _served(project):
    return ModelVersion.objects.get(project=project, is_served=True).number


def test_owner_and_scientist_see_metrics_and_the_heat_map(client, two_versions):
    project, v1, _v2 = two_versions
    scientist = UserFactory()
    MembershipFactory(project=project, user=scientist, role="scientist")
    for user in (project.owner, scientist):
        client.force_login(user)
        page = client.get(_url(project, 1))
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="per-class"' in html and 'class="heatmap"' in html
        matrix = v1.metrics["confusion_matrix"]
        # Every count of the matrix is printed in its cell, with an intensity class.
        assert html.count('<td class="heat-') == len(matrix) ** 2
        assert f'diag" title="true 0, predicted 0: {matrix[0][0]} of {sum(matrix[0])}"' in html
        assert "Roll back to v1" in html  # v2 is served, v1 older
    # The project page links each iteration to its page.
    detail = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert _url(project, 1) in detail and _url(project, 2) in detail


def test_annotator_gets_403_and_non_member_404(client, two_versions):
    project, _v1, _v2 = two_versions
    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator, role="annotator")
    client.force_login(annotator)
    assert client.get(_url(project, 1)).status_code == 403
    assert client.post(_url(project, 1, "version-serve"),
                       {"served": "2", "action": "rollback"}).status_code == 403
    assert client.get(_url(project, 1, "version-training-set-csv")).status_code == 403
    client.force_login(UserFactory())
    assert client.get(_url(project, 1)).status_code == 404
    assert client.post(_url(project, 1, "version-serve"),
                       {"served": "2", "action": "rollback"}).status_code == 404
    assert _served(project) == 2
    client.force_login(project.owner)
    assert client.get(_url(project, 9)).status_code == 404


def test_get_changes_nothing_and_a_post_without_csrf_is_refused(two_versions):
    project, _v1, _v2 = two_versions
    client = Client(enforce_csrf_checks=True)
    client.force_login(project.owner)
    assert client.get(_url(project, 1, "version-serve")).status_code == 405
    assert client.get(_url(project, 1) + "?served=2&action=rollback").status_code == 200
    refused = client.post(_url(project, 1, "version-serve"), {"served": "2", "action": "rollback"})
    assert refused.status_code == 403
    assert _served(project) == 2


def test_roll_back_and_promote_record_who_and_refuse_a_stale_page(client, two_versions):
    project, _v1, _v2 = two_versions
    client.force_login(project.owner)
    page = client.get(_url(project, 2)).content.decode()
    assert 'id="rollback-button"' in page and "Roll back to v1" in page
    assert 'data-confirm="Roll back: serve v1' in page
    response = client.post(_url(project, 1, "version-serve"), {"served": "2", "action": "rollback"})
    assert response.status_code == 302 and response["Location"] == _url(project, 1)
    assert _served(project) == 1
    v1 = ModelVersion.objects.get(project=project, number=1)
    assert f"rolled back to by {project.owner.username}" in v1.promotion_note
    assert "(was v2)" in v1.promotion_note
    assert "Rolled back: v1 is served now (was v2)." in client.get(_url(project, 1)).content.decode()
    # A second click from the stale v2 page (it still says v2 is served) changes nothing.
    stale = client.post(_url(project, 1, "version-serve"), {"served": "2", "action": "rollback"})
    assert stale.status_code == 409 and b"the served version changed (now v1)" in stale.content
    missing = client.post(_url(project, 2, "version-serve"), {"action": "promote"})
    assert missing.status_code == 400 and _served(project) == 1
    promoted = client.post(_url(project, 2, "version-serve"), {"served": "1", "action": "promote"})
    assert promoted.status_code == 302 and _served(project) == 2
    assert "promoted by" in ModelVersion.objects.get(project=project, number=2).promotion_note


def test_rollback_target_is_the_newest_earlier_version_that_was_served(client, two_versions):
    project, _v1, _v2 = two_versions
    project.promotion = "best"
    project.save()
    ModelVersion.objects.filter(project=project, number=2).update(is_served=False)
    ModelVersion.objects.filter(project=project, number=1).update(is_served=True)
    v3 = train_version(project)  # served if it beats v1 on the same labels, else not
    ModelVersion.objects.filter(project=project).update(is_served=False)
    ModelVersion.objects.filter(pk=v3.pk).update(is_served=True)
    ModelVersion.objects.filter(project=project, number=2).update(served_at=None)
    client.force_login(project.owner)
    page = client.get(_url(project, 3)).content.decode()
    assert "Roll back to v1" in page  # v2 was never served (served_at cleared)


def test_compare_lists_the_test_samples_whose_prediction_changed(client, two_versions):
    project, v1, v2 = two_versions
    comparison = version_compare(project=project, a=v1, b=v2)
    assert comparison.test_count == Sample.objects.filter(project=project, split="test").count()
    # v2 never learned "0": every test "0" v1 got right is now wrong.
    assert comparison.changed_count >= comparison.broken_count > 0
    assert all(row.predicted_a != row.predicted_b for row in comparison.changed)
    assert all(row.predicted_b != "0" for row in comparison.changed)
    for row in comparison.changed:
        assert Label.objects.current().get(sample=row.sample).value == row.true_label
    deltas = {d.name: d.delta for d in comparison.metrics}
    assert deltas["macro-F1"] == pytest.approx(v2.macro_f1 - v1.macro_f1)
    assert [c.label for c in comparison.per_class] == project.labels

    client.force_login(project.owner)
    html = client.get(_url(project, 1) + "?with=2").content.decode()
    assert 'id="changed-samples"' in html
    assert f"<b>{comparison.changed_count}</b> of {comparison.test_count}" in html
    assert html.count("<tr data-sample=") == min(comparison.changed_count, 50)
    bad = client.get(_url(project, 1) + "?with=abc")
    assert bad.status_code == 400 and b"is not a version number" in bad.content
    assert client.get(_url(project, 1) + "?with=7").status_code == 400


def test_nice_ticks_and_the_simulated_baseline_on_the_project_page(client, two_versions):
    assert [nice_step(n) for n in (7, 30, 90, 100, 700, 2400)] == [2, 10, 20, 20, 200, 500]
    for top in range(1, 5000, 37):
        step = nice_step(top)
        assert 3 <= -(-top // step) <= 5 or top <= 4
    project, _v1, _v2 = two_versions
    curve = learning_curve(project=project)
    assert [t.value for t in curve.y_ticks] == ["0", "0.25", "0.5", "0.75", "1"]
    assert 4 <= len(curve.x_ticks) <= 6 and curve.x_ticks[0].value == "0"
    assert [s.key for s in curve.series] == ["project"]
    SimulationRun.objects.create(
        project=project, source="builtin:digits", model="logreg", batch_size=10, seeds=2,
        full_accuracy=0.9, curves={
            "random": {"accuracy": [[10, 0.5], [20, 0.6]], "macro_f1": [[10, 0.4], [20, 0.55]]},
            project.query_strategy: {"accuracy": [[10, 0.5], [20, 0.7]],
                                     "macro_f1": [[10, 0.45], [20, 0.68]]}})
    curve = learning_curve(project=project)
    assert [s.key for s in curve.series] == ["project", "random", "strategy"]
    client.force_login(project.owner)
    html = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert 'data-series="random"' in html and "random baseline (simulated on builtin:digits" in html
    assert "labels trained on</text>" in html and "test macro-F1</text>" in html
