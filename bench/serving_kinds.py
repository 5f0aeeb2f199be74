"""The three project kinds of the serving benchmark: data, project, bodies, in-process figures.

- image: scikit-learn's 8x8 digits; our API gets ``{"pixels": [...]}`` (or PNGs), MLflow
  the 64 values as a dataframe.
- tabular: the same digits as 64 numeric columns (5% of cells missing) plus two
  categorical columns with missing values (``region``: noise; ``stroke``: a weak hint of
  the label), both servers getting the same rows (MLflow as a dataframe, nulls as null).
- text: 3,000 synthetic documents of 10 topics (pseudo-words made of syllables, a shared
  vocabulary plus each topic's own), TF-IDF on words and character n-grams + logistic
  regression; MLflow gets ``{"inputs": [texts]}``.

Each is trained through our own retrain service, and MLflow serves the same fitted
artifact (the sklearn pipeline, featurizer included). :func:`setup_main` runs inside
Django, as a subprocess of ``bench/serving.py``, and also times the in-process reference
calls: the artifact's ``predict_proba`` + JSON, the served (compiled) ``predict_proba`` +
JSON, and the estimator alone on featurized rows.
"""
from __future__ import annotations

import io
import json
import statistics
import sys
import time

import numpy as np

KINDS = ("image", "tabular", "text")
REGIONS = ["north", "south", "east", "west", "centre"]
SYLLABLES = ["ka", "lo", "mi", "tu", "re", "sa", "no", "vi", "de", "po", "ra", "ze", "fi",
             "gu", "he", "ju", "be", "ch", "st", "on"]


def slug(kind: str) -> str:
    return f"bench-{kind}"


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def digits_pngs(X: np.ndarray) -> list[bytes]:
    from PIL import Image

    pngs = []
    for row in X:
        pixels = (row.reshape(8, 8) * (255 / 16)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def tabular_rows(X: np.ndarray, y: np.ndarray, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for values, label in zip(X, y):
        row = {f"x{k}": (None if rng.random() < 0.05 else float(v)) for k, v in enumerate(values)}
        row["region"] = None if rng.random() < 0.2 else REGIONS[rng.integers(len(REGIONS))]
        hint = "loop" if label in (0, 6, 8, 9) else "line"
        row["stroke"] = None if rng.random() < 0.3 else (hint if rng.random() < 0.8 else "mixed")
        rows.append(row)
    return rows


def tabular_columns() -> list[str]:
    return [*(f"x{k}" for k in range(64)), "region", "stroke"]


def text_corpus(n: int = 3000, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    words = sorted({"".join(rng.choice(SYLLABLES, rng.integers(2, 5))) for _ in range(4000)})
    shared, topical = words[:800], words[800:]
    per_topic = len(topical) // 10
    texts, y = [], []
    for i in range(n):
        topic = i % 10
        own = topical[topic * per_topic:(topic + 1) * per_topic]
        length = int(rng.integers(15, 45))
        picks = [own[rng.integers(len(own))] if rng.random() < 0.35 else
                 shared[rng.integers(len(shared))] for _ in range(length)]
        texts.append(" ".join(picks).capitalize() + ".")
        y.append(topic)
    return texts, np.asarray(y)


def instances(kind: str, n: int) -> tuple[list[dict], object]:
    """Return (our API's instances, the artifact's model input) of the first ``n`` rows."""
    if kind == "text":
        texts, _y = text_corpus()
        return [{"text": t} for t in texts[:n]], texts[:n]
    X, y = digits()
    if kind == "tabular":
        rows = tabular_rows(X, y)[:n]
        return rows, rows
    return ([{"pixels": np.rint(X[i] * (255 / 16)).astype(int).tolist()} for i in range(n)],
            np.rint(X[:n] * (255 / 16)) / 255.0)


def mlflow_body(kind: str, n: int) -> bytes:
    """The same rows as MLflow's scoring server takes them."""
    if kind == "text":
        texts, _y = text_corpus()
        return json.dumps({"inputs": texts[:n]}).encode()
    X, y = digits()
    if kind == "tabular":
        columns = tabular_columns()
        rows = tabular_rows(X, y)[:n]
        return json.dumps({"dataframe_split": {
            "columns": columns, "data": [[row[c] for c in columns] for row in rows]}}).encode()
    return json.dumps({"dataframe_split": {"columns": [f"p{i}" for i in range(64)],
                                           "data": (np.rint(X[:n] * (255 / 16)) / 255.0).tolist()}}
                      ).encode()


def _create_samples(kind: str, project) -> list[str]:
    """Store the kind's samples; return each one's true label in creation order."""
    from annotation.demo import samples_create_images
    from annotation.models import Sample

    if kind == "image":
        X, y = digits()
        samples_create_images(project=project,
                              images=((f"d{i}", png) for i, png in enumerate(digits_pngs(X))))
        return [str(v) for v in y]
    if kind == "tabular":
        X, y = digits()
        payloads = [{"values": row} for row in tabular_rows(X, y)]
    else:
        texts, y = text_corpus()
        payloads = [{"text": text} for text in texts]
    for i, payload in enumerate(payloads):
        sample = Sample(project=project, external_id=f"s{i}", **payload)
        sample.split = Sample.Split.TEST if sample.random_key < project.test_fraction else (
            Sample.Split.POOL)
        sample.save()
    return [str(v) for v in y]


def _p50_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def raw_figures(kind: str, estimator, rows: int, repeats: int = 200) -> dict:
    """p50 of the in-process calls a request of ``rows`` rows stands for."""
    import orjson

    from learning.compiled_features import split_featurizer
    from serving.model_cache import lean_predict_proba

    api_instances, model_input = instances(kind, rows)
    served = lean_predict_proba(estimator)
    served_input = ([i["text"] for i in api_instances] if kind == "text" else
                    model_input if kind != "image" else model_input.astype(np.float32))
    labels = [str(c) for c in estimator.classes_]

    def as_json(proba):
        return orjson.dumps([{"label": labels[int(p.argmax())], "confidence": float(p.max()),
                              "probabilities": dict(zip(labels, p.tolist()))} for p in proba])

    featurizer, rest = split_featurizer(estimator)
    featurized = featurizer.transform(model_input) if featurizer is not None else model_input
    slow = max(10, repeats // 10)
    return {
        "rows": rows,
        "pipeline_predict_proba_json_p50_ms": _p50_ms(
            lambda: as_json(estimator.predict_proba(model_input)), slow),
        "served_predict_proba_json_p50_ms": _p50_ms(
            lambda: as_json(served(served_input)), repeats),
        "estimator_only_p50_ms": _p50_ms(lambda: rest.predict_proba(featurized), repeats),
    }


def setup_project(kind: str) -> dict:
    """Create and train the kind's project (Django set up); return its token key, served
    version and loaded artifact."""
    from django.contrib.auth import get_user_model

    from annotation.models import Label, Sample
    from annotation.services import project_create
    from learning import artifacts
    from learning.services import model_version_request, model_version_train
    from serving.services import api_token_create

    owner, _ = get_user_model().objects.get_or_create(username="bench")
    labels = [str(d) for d in range(10)]
    project = project_create(owner=owner, slug=slug(kind), name=f"Bench {kind}", kind=kind,
                             labels=labels, batch_size=100000)
    if kind == "image":
        project.image_size = 8
    if kind == "tabular":
        project.columns = tabular_columns()
    project.save()
    truth = _create_samples(kind, project)
    samples = list(Sample.objects.filter(project=project).order_by("pk"))
    Label.objects.bulk_create([Label(sample=s, annotator=owner, value=truth[i])
                               for i, s in enumerate(samples)])
    Sample.objects.filter(project=project).update(status="labeled")
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    assert version.is_served, version.error
    _, key = api_token_create(project=project, scopes=["predict"])
    estimator = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    return {"key": key, "version": version, "estimator": estimator}


def setup_main() -> None:
    """argv: kind, row counts (comma-separated). Prints one JSON line, then stays as the
    in-process reference: each line ``ROWS REPEATS`` read from stdin is answered with one
    line ``RAW {json}``, the figures of :func:`raw_figures` measured then, so that
    ``bench/serving.py`` times them in the same round as the servers. An empty line or
    the end of stdin ends it."""
    import django

    django.setup()
    kind, row_counts = sys.argv[1], [int(r) for r in sys.argv[2].split(",")]
    made = setup_project(kind)
    version, estimator = made["version"], made["estimator"]
    print(json.dumps({"key": made["key"], "artifact": version.artifact_path,
                      "accuracy": version.accuracy,
                      "raw": [raw_figures(kind, estimator, n) for n in row_counts]}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        rows, repeats = (int(v) for v in line.split())
        print("RAW " + json.dumps(raw_figures(kind, estimator, rows, repeats)), flush=True)


if __name__ == "__main__":
    setup_main()
