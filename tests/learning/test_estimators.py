"""The estimator registry builds what a model spec asks for."""
import pytest
from sklearn.preprocessing import StandardScaler

from learning.estimators import UnknownEstimator, build_estimator


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
