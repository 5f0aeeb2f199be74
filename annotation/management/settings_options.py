"""The options of the project settings commands (``create_project``, ``project_settings``)."""
from __future__ import annotations

from argparse import ArgumentParser

from django import forms

from annotation import project_limits as limits
from annotation.models import Project

# option destination -> form field
LEARNING_OPTIONS = {
    "batch_size": "batch_size", "strategy": "query_strategy", "model": "estimator",
    "C": "C", "n_estimators": "n_estimators", "promotion": "promotion",
    "test_fraction": "test_fraction", "featurizer": "featurizer",
}


def learning_arguments_add(parser: ArgumentParser, *, batch_size: int | None = None,
                           test_fraction: float | None = None) -> None:
    """Add the options that set how a project learns; each is validated by the forms."""
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help="Retrain every N labels.")
    parser.add_argument("--strategy", choices=Project.Strategy.values,
                        help="Query strategy (default: default).")
    parser.add_argument("--model", choices=Project.Estimator.values,
                        help=f"Estimator (default: {Project.DEFAULT_ESTIMATOR}).")
    parser.add_argument("--C", dest="C", type=float,
                        help="C of logreg and linear_svm (empty: the estimator's default).")
    parser.add_argument("--n-estimators", type=int, help="Trees of random_forest.")
    parser.add_argument("--promotion", choices=Project.Promotion.values,
                        help="Which version is served: best (default) or latest.")
    parser.add_argument("--test-fraction", type=float, default=test_fraction,
                        help="Share of samples held out for evaluation, 0.05 to 0.5.")
    parser.add_argument("--featurizer", choices=[name for name, _l in limits.FEATURIZER_CHOICES],
                        help="pixels or cnn (images), tfidf or minilm (texts), columns "
                             "(tables); cnn and minilm need `make featurizers` first.")


def learning_options(options: dict) -> dict:
    """Return the form data of the learning options given (left out: not in the result)."""
    return {field: options[dest] for dest, field in LEARNING_OPTIONS.items()
            if options.get(dest) is not None}


def form_errors_message(form: forms.Form, *, positional: tuple[str, ...] = ()) -> str:
    """One line naming each refused option (or ``positional`` argument) with its errors."""
    options = {field: dest for dest, field in LEARNING_OPTIONS.items()}
    parts = []
    for field, errors in form.errors.items():
        if field == "__all__":
            parts.append(" ".join(errors))
            continue
        name = field if field in positional else "--" + options.get(field, field).replace("_", "-")
        parts.append(f"{name}: {' '.join(errors)}")
    return "; ".join(parts)
