"""The reference a version's production inputs are compared with for input drift: built once
when the version is trained, read by serving's monitoring (``drift_reference_load``).

The reference is a random sample of up to ``REFERENCE_ROWS`` of the project's samples as
they are at training time, the data the version's featurizer was fitted on and its labels
were drawn from. Not the labeled set alone: active learning picks those by the query
strategy (the most uncertain, the most diverse), so they are a biased picture of the inputs
and would show drift that is not there.

- Tabular: each column's values (numeric: the numbers; categorical: counts per value),
  missing cells left out. At most ``MAX_NUMBERS`` numbers in all, so a wide table keeps
  fewer rows.
- Text and images: the sample's featurized rows (TF-IDF, pixels) projected on their first
  ``COMPONENTS`` principal components (for text, of the ``MAX_COLUMNS`` most frequent
  TF-IDF features), and the model's confidence (max probability) on the sample's rows it
  was not trained on (its own training rows would look over-confident). The components
  are kept as plain arrays in an ``.npz`` with its sha256. Text keeps
  ``TEXT_REFERENCE_ROWS`` rows, large images fewer (``MAX_PIXELS``).
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from annotation.models import Project, Sample
from learning import artifacts
from learning.model_input import model_input_random_subset, take_rows
from learning.models import DriftReference, ModelVersion

logger = logging.getLogger(__name__)

REFERENCE_ROWS = 5000
TEXT_REFERENCE_ROWS = 1000  # featurizing a text costs 0.2-5 ms (by length), trained and served
MAX_NUMBERS = 250_000  # numeric cells a tabular reference keeps
MAX_PIXELS = 10_000_000  # pixel values an image reference reads (fewer rows of large images)
MAX_COLUMNS = 2000  # text: the components are fitted on this many most frequent features
COMPONENTS = 10
MIN_CONFIDENCE_ROWS = 30  # unseen rows needed for a confidence reference
CONFIDENCE = "confidence"


@dataclass(frozen=True)
class Reference:
    """A version's drift reference as serving reads it."""

    kind: str
    rows: int
    features: list[dict]
    note: str
    width: int = 0  # columns of the featurized rows
    columns: np.ndarray | None = None  # (d,) those the components use
    mean: np.ndarray | None = None  # (d,)
    components: np.ndarray | None = None  # (k, d)


def _columns(frame: pd.DataFrame) -> list[dict]:
    """Each column's present values: numbers when all of them parse, else value counts."""
    out = []
    for name in frame.columns:
        present = frame[name].dropna()
        if present.empty:
            continue
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all():
            out.append({"name": str(name), "values": numbers.astype(float).tolist()})
        else:
            counts = present.map(_category).value_counts()
            out.append({"name": str(name), "counts": {str(k): int(n) for k, n in counts.items()}})
    return out


def _category(value: object) -> str:
    """A categorical cell as imports store it (booleans as ``true``/``false``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _tabular(frame: pd.DataFrame) -> tuple[list[dict], int]:
    numeric = sum(pd.to_numeric(frame[c], errors="coerce").notna().any() for c in frame.columns)
    keep = min(len(frame), MAX_NUMBERS // max(1, numeric))
    if keep < len(frame):
        rows = np.sort(np.random.default_rng(0).choice(len(frame), keep, replace=False))
        frame = frame.iloc[rows]
    return _columns(frame), len(frame)


def _proba(model, featurized: bool, X, Z):
    """The model's probabilities of rows given raw (``X``) and featurized (``Z``)."""
    if featurized and isinstance(model, Pipeline):
        return model[1:].predict_proba(Z)  # skip featurizing again
    return model.predict_proba(X)


def _components(model, featurizer, ids: np.ndarray, X,
                trained_ids: set[int]) -> tuple[list[dict], dict[str, np.ndarray], str]:
    full = featurizer.transform(X) if featurizer is not None else np.asarray(X, dtype=np.float64)
    Z, width = full, full.shape[1]
    columns = np.arange(width)
    if sparse.issparse(Z):
        # TF-IDF is 100k columns wide and sparse: fitting the components on its most
        # frequent features keeps the fit to a second and the basis small.
        if width > MAX_COLUMNS:
            frequency = np.asarray((Z != 0).sum(axis=0)).ravel()
            columns = np.sort(np.argsort(-frequency, kind="stable")[:MAX_COLUMNS])
        Z = Z[:, columns].toarray()
    k = min(COMPONENTS, Z.shape[0] - 1, Z.shape[1] - 1)
    if k < 1:
        raise ValueError(f"{Z.shape[0]} rows of {Z.shape[1]} features: no components")
    pca = PCA(n_components=k, random_state=0).fit(Z)
    keep = pca.explained_variance_ratio_ > 1e-6  # a flat direction would only measure noise
    projected = pca.transform(Z)[:, keep]
    features = [{"name": f"PC{i + 1}", "values": projected[:, j].tolist()}
                for j, i in enumerate(np.flatnonzero(keep))]
    unseen = np.flatnonzero(~np.isin(ids, np.fromiter(trained_ids, dtype=np.int64)))
    note = f"{int(keep.sum())} principal components of {len(columns)} of {width} features"
    if len(unseen) >= MIN_CONFIDENCE_ROWS:
        proba = _proba(model, featurizer is not None, take_rows(X, unseen), full[unseen])
        features.append({"name": CONFIDENCE, "values": np.max(proba, axis=1).tolist()})
        note += f"; confidence on {len(unseen)} samples it was not trained on"
    else:
        note += f"; no confidence: only {len(unseen)} samples it was not trained on"
    basis = {"width": np.array([width], dtype=np.int64), "columns": columns.astype(np.int64),
             "mean": pca.mean_.astype(np.float64),
             "components": pca.components_[keep].astype(np.float64)}
    return features, basis, note


def drift_reference_build(*, version: ModelVersion, model, featurizer,
                          trained_ids: set[int]) -> DriftReference | None:
    """Compute and store ``version``'s drift reference from the project's samples now.

    ``model`` is the version's fitted model (raw input in, as its artifact), ``featurizer``
    the fitted featurizer inside it (None for images), ``trained_ids`` the samples it was
    fitted on. Returns None when the project has no samples.
    """
    project = version.project
    most = {Project.Kind.TEXT: TEXT_REFERENCE_ROWS,
            Project.Kind.IMAGE: min(REFERENCE_ROWS, MAX_PIXELS // project.image_size ** 2)}
    ids, X = model_input_random_subset(project=project,
                                       max_rows=most.get(project.kind, REFERENCE_ROWS))
    if len(ids) == 0:
        return None
    basis_path = basis_sha256 = ""
    if project.kind == Project.Kind.TABULAR:
        kind = DriftReference.Kind.COLUMNS
        features, rows = _tabular(X)
        note = f"raw columns of {rows} random samples"
    else:
        kind = DriftReference.Kind.COMPONENTS
        features, basis, note = _components(model, featurizer, ids, X, trained_ids)
        rows = len(ids)
        note = f"{rows} random samples; {note}"
        basis_path, basis_sha256 = artifacts.numbers_save(
            basis, relative=f"drift/{project.pk}/v{version.number}-{uuid.uuid4().hex[:12]}.npz")
    old = (DriftReference.objects.filter(version=version)
           .values_list("basis_path", flat=True).first())
    reference, _created = DriftReference.objects.update_or_create(
        version=version, defaults={"kind": kind, "rows": rows, "features": features,
                                   "basis_path": basis_path, "basis_sha256": basis_sha256,
                                   "note": note})
    if old and old != basis_path:
        artifacts.delete(old)
    return reference


def drift_reference_build_quietly(*, version: ModelVersion, model, featurizer,
                                  trained_ids: set[int]) -> None:
    """Build the reference at training time; a failure is logged and never fails training
    (the monitoring page then says the version has no reference)."""
    try:
        drift_reference_build(version=version, model=model, featurizer=featurizer,
                              trained_ids=trained_ids)
    except Exception:
        logger.exception("no drift reference for %s", version)


def drift_reference_backfill(*, version: ModelVersion) -> DriftReference | None:
    """Build the reference of a version trained before references were kept, from its
    artifact and the project's samples as they are now (the ``drift_reference`` command)."""
    model = artifacts.load(path=version.artifact_path, sha256=version.artifact_sha256)
    featurizer = None
    if isinstance(model, Pipeline) and model.steps[0][0] == "features":
        featurizer = model.steps[0][1]
    trained = Sample.objects.filter(project_id=version.project_id, split=Sample.Split.POOL,
                                    labels__pk__lte=version.last_label_id or 0)
    return drift_reference_build(version=version, model=model, featurizer=featurizer,
                                 trained_ids=set(trained.values_list("pk", flat=True)))


def drift_reference_load(*, version_id: int) -> Reference | None:
    """Return the version's reference, or None when it has none. Raise ``ArtifactError``
    when its components file is missing or fails its sha256 check."""
    row = DriftReference.objects.filter(version_id=version_id).first()
    if row is None:
        return None
    width, columns, mean, components = 0, None, None, None
    if row.kind == DriftReference.Kind.COMPONENTS:
        basis = artifacts.numbers_load(path=row.basis_path, sha256=row.basis_sha256)
        if set(basis) != {"width", "columns", "mean", "components"}:
            raise artifacts.ArtifactError(f"{row.basis_path!r} holds {sorted(basis)}")
        width = int(basis["width"][0])
        columns, mean, components = basis["columns"], basis["mean"], basis["components"]
    return Reference(kind=row.kind, rows=row.rows, features=row.features, note=row.note,
                     width=width, columns=columns, mean=mean, components=components)
