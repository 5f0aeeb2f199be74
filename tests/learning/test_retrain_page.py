"""The project page's retrain button, staleness line and learning curve (wiring only)."""
from django.urls import reverse

from learning.models import ModelVersion
from tests.factories import MembershipFactory, UserFactory


def test_scientist_retrains_from_the_project_page(client, project):
    client.force_login(project.owner)
    response = client.post(reverse("project-retrain", args=[project.slug]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'id="iterations"' in response.content and b"v1 queued" in response.content
    assert ModelVersion.objects.filter(project=project, trigger="manual").count() == 1
    page = client.get(reverse("project-detail", args=[project.slug]))
    assert b'id="staleness"' in page.content and b'id="retrain"' in page.content


def test_annotator_cannot_retrain(client, project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="annotator")
    client.force_login(user)
    response = client.post(reverse("project-retrain", args=[project.slug]))
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()


def test_the_project_page_links_to_monitoring_and_annotators(client, project):
    client.force_login(project.owner)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert reverse("project-monitoring", args=[project.slug]) in page
    assert reverse("annotators", args=[project.slug]) in page


def test_the_served_model_hook_loads_number_and_accuracy_only(project, django_assert_num_queries):
    """The label ledger asks it once per label: no metrics JSON, no confusion matrix."""
    from annotation import hooks

    ModelVersion.objects.create(project=project, number=1, status="ready", is_served=True,
                                accuracy=0.9, metrics={"confusion_matrix": [[1] * 50] * 50})
    with django_assert_num_queries(1) as captured:
        served = hooks.served_model(project=project)
        assert (served.number, served.accuracy) == (1, 0.9)
    assert "metrics" not in captured.captured_queries[0]["sql"]
