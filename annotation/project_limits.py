"""The bounds of a project's settings, wherever they are set.

The New project and Settings forms, the ``create_project`` and ``project_settings``
commands (through those forms) and the settings services all take their limits from here.
"""
from annotation.models import Project

BATCH_SIZE_MIN = 1
BATCH_SIZE_MAX = 100_000
OVERLAP_MIN = 1
OVERLAP_MAX = 20
# Under 5% the test split is too small to compare two models on; over half, most labels
# never train a model.
TEST_FRACTION_MIN = 0.05
TEST_FRACTION_MAX = 0.5
PRODUCTION_SHARE_MIN = 0.0
PRODUCTION_SHARE_MAX = 1.0

# The estimator parameters a project may set (model_spec["params"]) and the estimators that
# take each: learning.estimators.build_estimator passes them to the estimator's factory,
# and tests/learning/test_estimators.py checks that every one listed here is accepted.
ESTIMATOR_PARAMS: dict[str, tuple[str, ...]] = {
    "C": (Project.Estimator.LOGREG, Project.Estimator.LINEAR_SVM),
    "n_estimators": (Project.Estimator.RANDOM_FOREST,),
}
# What the estimators use when a parameter is left empty (the factories' defaults).
ESTIMATOR_PARAM_DEFAULTS: dict[str, float] = {"C": 1.0, "n_estimators": 200}
C_MIN = 1e-4
C_MAX = 1e4
N_ESTIMATORS_MIN = 1
N_ESTIMATORS_MAX = 2000

# Estimators that cannot train on a kind's features: histogram gradient boosting needs dense
# rows, and texts become sparse TF-IDF rows (tests/learning/test_estimators.py checks both).
ESTIMATORS_UNFIT_FOR_KIND: dict[str, tuple[str, ...]] = {
    Project.Kind.TEXT: (Project.Estimator.HIST_GB,),
}


def estimator_unfit_reason(*, estimator: str, kind: str) -> str | None:
    """Why ``estimator`` cannot train a ``kind`` project, or None when it can."""
    if estimator in ESTIMATORS_UNFIT_FOR_KIND.get(kind, ()):
        return (f"{Project.Estimator(estimator).label} cannot train on {kind} samples "
                f"(it needs dense features); choose another model")
    return None

# The featurizers a project may choose per kind (model_spec["featurizer"]["name"]), default
# first. The registry is learning.featurizer_options.CHOICES, which annotation cannot import;
# tests/learning/test_pretrained.py checks that the two agree. The pretrained ones (cnn,
# minilm) run only where `make featurizers` installed their files: the settings ask
# learning through the featurizer_unavailable hook before accepting them.
FEATURIZERS: dict[str, tuple[tuple[str, str], ...]] = {
    Project.Kind.IMAGE: (("pixels", "pixels (default)"),
                         ("cnn", "CNN features (EfficientNet-Lite0 block 10), scaled, PCA to 50")),
    Project.Kind.TEXT: (("tfidf", "TF-IDF of words and characters (default)"),
                        ("minilm", "MiniLM sentence embeddings (all-MiniLM-L6-v2)")),
    Project.Kind.TABULAR: (("columns", "columns: scaled numbers, one-hot categories (default)"),),
}
FEATURIZER_CHOICES = [(name, label) for choices in FEATURIZERS.values() for name, label in choices]


def featurizer_of(project: Project) -> str:
    """The featurizer a project's model spec names, else its kind's default."""
    name = ((project.model_spec or {}).get("featurizer") or {}).get("name")
    return name or FEATURIZERS[project.kind][0][0]


def featurizer_unfit_reason(*, featurizer: str, kind: str) -> str | None:
    """Why ``featurizer`` cannot featurize ``kind`` samples, or None when it can."""
    names = [name for name, _label in FEATURIZERS.get(kind, ())]
    if featurizer not in names:
        return f"{featurizer!r} is not a featurizer for {kind} samples; choose from {', '.join(names)}"
    return None
