"""The estimator registry builds what a model spec asks for, and every estimator fits."""
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from learning import features
from learning.estimators import ESTIMATORS, CalibratedLinearSVC, UnknownEstimator, build_estimator


def test_image_default_skips_scaling_and_tabular_default_scales():
    assert not any(isinstance(step, StandardScaler) for _n, step in
                   build_estimator(None, kind="image").steps)
    assert isinstance(build_estimator(None, kind="tabular").steps[0][1], StandardScaler)


def test_spec_params_override_kind_defaults():
    model = build_estimator({"estimator": "logreg", "params": {"C": 0.5, "scale": True}}, kind="image")
    assert isinstance(model.steps[0][1], StandardScaler)
    assert model.steps[-1][1].C == 0.5


def test_unknown_estimator_is_refused():
    with pytest.raises(UnknownEstimator):
        build_estimator({"estimator": "gpt"})
    with pytest.raises(UnknownEstimator, match="bad params"):
        build_estimator({"estimator": "logreg", "params": {"depth": 3}})


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_fits_and_predicts_probabilities(name):
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3,
                               class_sep=2.0, random_state=0)
    model = build_estimator({"estimator": name}, kind="tabular").fit(X[:90], y[:90])
    proba = model.predict_proba(X[90:])
    assert proba.shape == (30, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert (model.predict(X[90:]) == y[90:]).mean() > 0.7


@pytest.mark.parametrize("name", ["logreg", "linear_svm", "random_forest"])
def test_text_estimators_take_sparse_tf_idf(name):
    texts = ["goal match team", "chip phone battery", "match win team", "battery app phone"] * 3
    X = features.TextFeaturizer().fit_transform(texts)
    model = build_estimator({"estimator": name}, kind="text").fit(X, ["s", "t", "s", "t"] * 3)
    assert model.predict(X[:2]).tolist() == ["s", "t"]


def test_calibrated_svm_shrinks_folds_then_falls_back_to_softmax_with_few_labels():
    X = np.array([[0.0], [0.2], [1.0], [1.2], [2.0], [2.2]])
    two_each = CalibratedLinearSVC().fit(X, [0, 0, 1, 1, 2, 2])
    assert two_each.calibration_ == "sigmoid-cv2"
    one_of_a_class = CalibratedLinearSVC().fit(X[:5], [0, 0, 1, 1, 2])
    assert one_of_a_class.calibration_ == "softmax"
    proba = one_of_a_class.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    binary = CalibratedLinearSVC().fit(X[:3], [0, 0, 1])
    assert binary.predict_proba(X).shape == (6, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        CalibratedLinearSVC().fit(X, [1] * 6)


@parametrize_with_checks([CalibratedLinearSVC()])
def test_calibrated_linear_svc_follows_sklearn_conventions(estimator, check):
    check(estimator)


def test_projects_offer_exactly_the_estimators_learning_implements():
    """annotation may not import learning, so its choices repeat the registry; keep them equal."""
    from annotation.models import Project

    assert sorted(Project.Estimator.values) == sorted(ESTIMATORS)
    # What the Settings page shows when the spec names no estimator is what trains.
    from learning.estimators import DEFAULT_ESTIMATOR, DEFAULT_ESTIMATOR_BY_KIND
    assert DEFAULT_ESTIMATOR == Project.DEFAULT_ESTIMATOR
    assert set(DEFAULT_ESTIMATOR_BY_KIND.values()) == {Project.DEFAULT_ESTIMATOR}


def test_every_parameter_the_settings_offer_reaches_the_estimators_that_take_it():
    import inspect

    from annotation import project_limits

    for param, takers in project_limits.ESTIMATOR_PARAMS.items():
        for name in ESTIMATORS:
            accepted = inspect.signature(ESTIMATORS[name]).parameters
            assert (param in accepted) == (name in takers), (param, name)
        for name in takers:
            default = inspect.signature(ESTIMATORS[name]).parameters[param].default
            assert default == project_limits.ESTIMATOR_PARAM_DEFAULTS[param], (param, name)
            value = {"C": 0.3, "n_estimators": 7}[param]
            clf = build_estimator({"estimator": name, "params": {param: value}}, kind="tabular")
            assert clf.steps[-1][1].get_params()[param] == value


@pytest.mark.parametrize("kind,name", [
    (kind, name) for kind in ("image", "text", "tabular") for name in sorted(ESTIMATORS)])
def test_settings_refuse_exactly_the_estimators_that_cannot_train_a_kind(kind, name):
    """The settings refuse hist_gb for texts; the refusal must match what fails to fit."""
    from annotation.project_limits import estimator_unfit_reason

    if kind == "text":
        texts = ["goal match team", "chip phone battery", "match win team", "battery app"] * 3
        X, y = features.TextFeaturizer().fit_transform(texts), ["s", "t", "s", "t"] * 3
    else:
        X, y = make_classification(n_samples=24, n_features=6, random_state=0)
    if estimator_unfit_reason(estimator=name, kind=kind):
        with pytest.raises((TypeError, ValueError)):
            build_estimator({"estimator": name}, kind=kind).fit(X, y)
    else:
        build_estimator({"estimator": name}, kind=kind).fit(X, y)
