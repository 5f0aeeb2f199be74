"""The featurizers a project may choose per data kind, and building the chosen one.

A project's choice is ``model_spec["featurizer"]["name"]``; without it the kind's default
(pixels, TF-IDF, columns) is used, as before. The pretrained options run files that
``make featurizers`` installs on each machine (``learning.pretrained``); the names and
labels here must match ``annotation.project_limits.FEATURIZERS`` (annotation cannot
import learning; tests/learning/test_pretrained.py checks that the two agree).
"""
from __future__ import annotations

from typing import Any

from learning import features
from learning.pretrained import files
from learning.pretrained.transformers import TRANSFORMERS

DEFAULTS = {"image": "pixels", "text": "tfidf", "tabular": "columns"}
CHOICES: dict[str, tuple[str, ...]] = {"image": ("pixels", "cnn"), "text": ("tfidf", "minilm"),
                                       "tabular": ("columns",)}


def featurizer_name(spec: dict[str, Any] | None, kind: str) -> str:
    """The featurizer a model spec names for ``kind`` (the kind's default when none)."""
    return ((spec or {}).get("featurizer") or {}).get("name") or DEFAULTS.get(kind, "")


def is_pretrained(name: str) -> bool:
    return name in files.SPECS


def build(kind: str, params: dict[str, Any] | None = None):
    """Return the unfitted featurizer of ``params`` (``name`` plus its parameters)."""
    params = dict(params or {})
    name = params.pop("name", None) or DEFAULTS.get(kind, "")
    if name not in CHOICES.get(kind, ()):
        raise features.FeatureError(f"featurizer {name!r} is not one for {kind} samples; "
                                    f"choose from {', '.join(CHOICES.get(kind, ()))}")
    if is_pretrained(name):
        reason = files.missing_reason(name)
        if reason:
            raise files.FeaturizerMissing(reason, detail={"featurizer": name})
        return TRANSFORMERS[name](**params)
    return features.build_featurizer(kind, **params)


def unavailable_reason(name: str) -> str | None:
    """Why featurizer ``name`` cannot run on this machine (None: it can, or is built in)."""
    return files.missing_reason(name) if is_pretrained(name) else None
