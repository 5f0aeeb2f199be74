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
