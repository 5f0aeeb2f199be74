"""The predict hot path's shortcuts give exactly what the general code gives."""
import io
import time
import uuid

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from learning import features
from serving.instances import _fast_vector, _featurize_image
from serving.model_cache import fast_predict_proba
from serving.services import _prediction_ids
from tests.factories import ProjectFactory, png_bytes
from tests.serving.test_predict_api import _b64, _predict


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("scale", [False, True])
def test_fast_predict_proba_matches_scikit_learn(n_classes, scale):
    X, y = make_classification(n_samples=120, n_features=12, n_informative=6,
                               n_classes=n_classes, random_state=0)
    steps = [("scale", StandardScaler())] if scale else []
    model = Pipeline([*steps, ("clf", LogisticRegression(max_iter=500))]).fit(X, y)
    fast = fast_predict_proba(model)
    assert fast is not model.predict_proba
    np.testing.assert_allclose(fast(X[:50]), model.predict_proba(X[:50]), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(fast(X[:1]), model.predict_proba(X[:1]), rtol=1e-10, atol=1e-14)
    single = X[:50].astype(np.float32)  # what featurizers produce: equal to float32 precision
    np.testing.assert_allclose(fast(single), model.predict_proba(single), rtol=1e-5, atol=1e-7)


def test_other_estimators_keep_their_own_predict_proba():
    X, y = make_classification(n_samples=60, n_features=5, random_state=0)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    assert fast_predict_proba(forest) == forest.predict_proba


def test_prediction_ids_are_distinct_time_ordered_version_7_uuids():
    first, second = _prediction_ids(500), _prediction_ids(3)
    ids = first + second
    assert len(set(ids)) == 503
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == i
               for u, i in zip(parsed, ids))
    assert first == sorted(first)  # the log's unique index grows at its right edge
    now_ms = time.time_ns() // 1_000_000
    assert all(0 <= now_ms - (u.int >> 80) < 5_000 for u in parsed)



@pytest.mark.parametrize("low", [0, (1 << 48) - 3, (1 << 48) - 1])
def test_a_batch_of_ids_counts_up_by_one_across_a_carry(monkeypatch, low):
    """A batch's ids share their first four groups unless the counter carries past the last
    group; either way each id is the one before plus one."""
    from serving import services

    random = (0x5A5 << 62 | low).to_bytes(10)
    monkeypatch.setattr(services.os, "urandom", lambda n: random)
    ids = _prediction_ids(6)
    values = [uuid.UUID(i).int for i in ids]
    assert values == list(range(values[0], values[0] + 6))
    assert [str(uuid.UUID(int=v)) for v in values] == ids
    assert len({i[:24] for i in ids}) == (1 if low == 0 else 2)

@pytest.mark.django_db
def test_png_fast_path_and_pixels_give_the_training_rows():
    project = ProjectFactory(image_size=8)
    data = png_bytes(2, seed=7)
    expected = features.image_vector(
        features.open_image(io.BytesIO(data), max_pixels=10**6), size=8)
    assert np.array_equal(_fast_vector(Image.open(io.BytesIO(data)), 8), expected)
    pixels = np.asarray(Image.open(io.BytesIO(data))).tolist()
    rows = _featurize_image(project, [{"image_base64": _b64(data)}, {"pixels": pixels},
                                      {"pixels": sum(pixels, [])}])
    assert all(np.array_equal(row, expected) for row in rows)
    mixed = _featurize_image(project, [{"pixels": pixels}, {"image_base64": _b64(data)}])
    assert np.array_equal(mixed[0], mixed[1])


def test_images_that_need_conversion_take_the_general_path():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    assert _fast_vector(Image.open(io.BytesIO(buffer.getvalue())), 8) is None
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 5).save(buffer, format="PNG")
    assert _fast_vector(Image.open(io.BytesIO(buffer.getvalue())), 8) is None


def test_a_revoked_token_is_refused_once_its_remembered_check_expires(
        served_project, client_with_token, settings):
    from core import remembered as token_cache
    from serving.services import api_token_revoke

    settings.API_TOKEN_CACHE_SECONDS = 60
    body = {"instances": [{"pixels": [0] * 64}]}
    assert _predict(client_with_token, served_project, body).status_code == 200
    api_token_revoke(token=client_with_token.token)
    assert _predict(client_with_token, served_project, body).status_code == 200  # remembered
    token_cache.forget()  # what the passing of API_TOKEN_CACHE_SECONDS does
    assert _predict(client_with_token, served_project, body).status_code == 401
    token_cache.forget()
