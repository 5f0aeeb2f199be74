"""What annotation asks of the apps above it, through functions they register at start-up.

annotation imports neither learning nor serving. Where a label write may make a retrain
due, an import asks for the cold start, a labeling page shows the served model and its
suggestion, or a label records the served version, annotation calls a hook here; learning and serving register the functions in
their ``AppConfig.ready()``. A hook nobody registered does nothing and answers its neutral
value (no model, no suggestion), so annotation works on its own.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annotation.models import Project, Sample

HOOKS = ("labels_added", "samples_added", "served_model", "batch_start", "suggestions",
         "suspicious_labels", "featurizer_unavailable")
_registry: dict[str, Callable[..., Any]] = {}


def register(**functions: Callable[..., Any]) -> None:
    """Register the functions behind hooks by name; a name outside ``HOOKS`` is a bug."""
    unknown = set(functions) - set(HOOKS)
    if unknown:
        raise TypeError(f"no such hook(s): {sorted(unknown)}; hooks are {HOOKS}")
    _registry.update(functions)


def labels_added(*, project: Project, label_count: int | None = None,
                 counted_from: int | None = None) -> None:
    """Labels were written (inside the writer's transaction): queue a retrain if one is due.

    ``label_count`` is the project's running label count after the write when the writer
    has it; ``counted_from`` where the current batch began, when the writer read it.
    """
    hook = _registry.get("labels_added")
    if hook is not None:
        hook(project=project, label_count=label_count, counted_from=counted_from)


def samples_added(*, project_id: int) -> None:
    """Samples were added (inside the writer's transaction): order the queue if no model is."""
    hook = _registry.get("samples_added")
    if hook is not None:
        hook(project_id=project_id)


def served_model(*, project: Project) -> Any | None:
    """The version the project serves (with ``number`` and ``accuracy``), or None."""
    hook = _registry.get("served_model")
    return hook(project=project) if hook is not None else None


def batch_start(*, project: Project) -> int:
    """The running label count at which the current retrain batch began (0 before any)."""
    hook = _registry.get("batch_start")
    return hook(project=project) if hook is not None else 0


def suggestions(*, project: Project, samples: Sequence[Sample]) -> dict[int, Any]:
    """Sample id -> the served model's suggestion (``label``, ``confidence``, ``model_version``)."""
    hook = _registry.get("suggestions")
    return hook(project=project, samples=samples) if hook is not None and samples else {}


def suspicious_labels(*, project: Project, sample_ids: Sequence[int] | None = None,
                      start: int = 0, limit: int | None = None) -> list[Any]:
    """The project's probably wrong current labels, most suspicious first (``sample_id``,
    ``value``, ``likely``, ``score``, ``reason``, ``version``); only those of ``sample_ids``
    when given; ``limit`` of them from position ``start``. Empty when nobody judged them."""
    hook = _registry.get("suspicious_labels")
    if hook is None or (sample_ids is not None and not sample_ids):
        return []
    return hook(project=project, sample_ids=sample_ids, start=start, limit=limit)


def featurizer_unavailable(*, featurizer: str) -> str | None:
    """Why ``featurizer``'s files cannot run on this machine (pretrained ones need
    ``make featurizers``), or None when it can run."""
    hook = _registry.get("featurizer_unavailable")
    return hook(featurizer) if hook is not None else None
