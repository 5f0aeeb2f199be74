"""A model, strategy or promotion policy chosen in Settings is what the next retrain uses."""
from django.urls import reverse
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from annotation.services import project_settings_update
from learning import artifacts
from learning.models import ModelVersion
from learning.services import model_version_request
from tests.factories import label_given


def _retrain(project, capture) -> ModelVersion:
    # As the retrain button and the label ledger do: with the project as it is now.
    project.refresh_from_db()
    with capture(execute=True):
        version = model_version_request(project=project)
    version.refresh_from_db()
    assert version.status == "ready", version.error
    return version


def _classifier(version: ModelVersion):
    return artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256).steps[-1][1]


def test_a_retrain_after_changing_the_estimator_trains_that_estimator(
        client, project, annotator, make_samples, django_capture_on_commit_callbacks):
    project.batch_size = 1000  # no automatic trigger; the test retrains explicitly
    project.save(update_fields=["batch_size"])
    for i, sample in enumerate(make_samples(18, 6)):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    first = _retrain(project, django_capture_on_commit_callbacks)
    assert first.estimator == "logreg" and isinstance(_classifier(first), LogisticRegression)

    client.force_login(project.owner)
    response = client.post(reverse("project-settings", args=[project.slug]), {
        "overlap": 1, "keys": "", "show_suggestion": "on", "batch_size": 1000,
        "query_strategy": "margin", "estimator": "random_forest", "n_estimators": 25,
        "promotion": "latest", "test_fraction": 0.2})
    assert response.status_code == 200, response.content.decode()
    first.refresh_from_db()
    assert first.is_served  # the change waits for the next retrain

    second = _retrain(project, django_capture_on_commit_callbacks)
    clf = _classifier(second)
    assert isinstance(clf, RandomForestClassifier) and clf.n_estimators == 25
    assert (second.estimator, second.query_strategy) == ("random_forest", "margin")
    assert second.is_served  # promotion "latest" serves it whatever its score

    project_settings_update(project=project, user=project.owner, estimator="logreg",
                            model_params={"C": 0.05})
    third = _retrain(project, django_capture_on_commit_callbacks)
    clf = _classifier(third)
    assert isinstance(clf, LogisticRegression) and clf.C == 0.05


def test_a_version_records_the_settings_of_the_row_not_of_a_stale_project_object(project):
    """Settings changed after the caller loaded the project still decide the new version."""
    from annotation.models import Project

    stale = Project.objects.get(pk=project.pk)
    Project.objects.filter(pk=project.pk).update(
        model_spec={"estimator": "random_forest"}, query_strategy="margin")
    version = model_version_request(project=stale)
    assert (version.estimator, version.query_strategy) == ("random_forest", "margin")
