"""The per-process model cache: cheap per-request checks, swaps within 1 s, refuses bad artifacts."""
import time

import pytest

from learning import artifacts
from learning.models import ModelVersion
from learning.services import model_version_promote
from serving import model_cache
from tests.serving.conftest import train_version


@pytest.fixture
def two_versions(served_project):
    return ModelVersion.objects.get(number=1), train_version(served_project)


def test_served_lookup_is_cached_between_checks(served_project, settings,
                                                django_assert_num_queries):
    settings.SERVING_MODEL_CHECK_SECONDS = 0.5
    first = model_cache.served_model(project_id=served_project.pk)
    with django_assert_num_queries(0):
        for _ in range(100):
            assert model_cache.served_model(project_id=served_project.pk) is first


def test_promotion_elsewhere_is_served_within_one_second(served_project, two_versions, settings):
    settings.SERVING_MODEL_CHECK_SECONDS = 0.5  # the production default
    first, second = two_versions
    assert model_cache.served_model(project_id=served_project.pk).number == 2
    model_version_promote(version=first)  # as another process would: no cache invalidation
    promoted = time.monotonic()
    while model_cache.served_model(project_id=served_project.pk).number != 1:
        assert time.monotonic() - promoted < 1.0, "promotion not picked up within 1 s"
        time.sleep(0.01)


def test_api_promotion_is_served_at_once_by_the_promoting_process(served_project, two_versions,
                                                                  settings,
                                                                  django_capture_on_commit_callbacks):
    from serving.services import served_version_set

    settings.SERVING_MODEL_CHECK_SECONDS = 60
    assert model_cache.served_model(project_id=served_project.pk).number == 2
    with django_capture_on_commit_callbacks(execute=True):
        served_version_set(project=served_project, number=1)
    assert model_cache.served_model(project_id=served_project.pk).number == 1


def test_tampered_artifact_is_refused_recorded_and_previous_keeps_serving(served_project,
                                                                          two_versions, caplog):
    first, second = two_versions
    model_version_promote(version=first)
    assert model_cache.served_model(project_id=served_project.pk).number == 1
    (artifacts.artifact_root() / second.artifact_path).write_bytes(b"tampered")
    model_version_promote(version=second)
    assert model_cache.served_model(project_id=served_project.pk).number == 1
    second.refresh_from_db()
    assert "does not match" in second.error
    assert "refusing artifact" in caplog.text
    caplog.clear()
    assert model_cache.served_model(project_id=served_project.pk).number == 1
    assert "refusing artifact" not in caplog.text  # not re-hashed on every request


def test_tampered_artifact_without_a_previous_model_is_a_409(served_project):
    version = ModelVersion.objects.get(is_served=True)
    (artifacts.artifact_root() / version.artifact_path).write_bytes(b"tampered")
    with pytest.raises(model_cache.NoServedModel, match="integrity"):
        model_cache.served_model(project_id=served_project.pk)


def test_pinned_versions_are_an_lru_needing_no_query_on_a_hit(served_project, two_versions,
                                                              settings, django_assert_num_queries):
    settings.SERVING_PINNED_MODELS = 1
    model_cache.version_model(project_id=served_project.pk, number=1)
    with django_assert_num_queries(0):
        assert model_cache.version_model(project_id=served_project.pk, number=1).number == 1
    model_cache.version_model(project_id=served_project.pk, number=2)
    assert list(model_cache._pinned) == [(served_project.pk, 2)]


def test_pinned_version_errors(served_project):
    ModelVersion.objects.create(project=served_project, number=2, status="failed")
    with pytest.raises(model_cache.UnknownVersion):
        model_cache.version_model(project_id=served_project.pk, number=3)
    with pytest.raises(model_cache.UnknownVersion):
        model_cache.version_model(project_id=served_project.pk, number=2**40)
    with pytest.raises(model_cache.VersionNotReady):
        model_cache.version_model(project_id=served_project.pk, number=2)


def test_requests_arriving_while_the_first_load_runs_wait_for_it(monkeypatch, settings):
    """A second worker thread must not take 'being loaded' for 'no model' (it answered 409
    to the first concurrent predictions a fresh process got)."""
    import threading

    from sklearn.linear_model import LogisticRegression

    settings.SERVING_MODEL_CHECK_SECONDS = 60.0
    estimator = LogisticRegression().fit([[0.0], [1.0]], ["a", "b"])
    row = {"id": 7, "number": 3, "artifact_path": "x", "artifact_sha256": "y"}
    loading = threading.Event()

    def slow_load(_row):
        loading.set()
        time.sleep(0.3)
        return estimator

    monkeypatch.setattr(model_cache, "_served_row", lambda project_id: row)
    monkeypatch.setattr(model_cache, "_load", slow_load)
    results = []

    def predict():
        try:
            results.append(model_cache.served_model(project_id=99).number)
        except model_cache.NoServedModel as exc:
            results.append(exc.message)

    first = threading.Thread(target=predict)
    first.start()
    loading.wait(5)
    second = threading.Thread(target=predict)
    second.start()
    first.join()
    second.join()
    assert results == [3, 3]
