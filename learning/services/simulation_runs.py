"""Record a ``simulate`` result for a project, so its page can draw the random baseline."""
from __future__ import annotations

from annotation.models import Project
from learning.models import SimulationRun


def simulation_run_record(*, project: Project, result: dict) -> SimulationRun:
    """Store the mean curves of ``result`` (``learning.simulation.simulate``'s answer)."""
    curves = {
        name: {"accuracy": data["curve"], "macro_f1": data.get("curve_macro_f1") or [],
               "labels_to_95": data["labels_to_95"], "labels_to_99": data["labels_to_99"]}
        for name, data in result["strategies"].items()
    }
    return SimulationRun.objects.create(
        project=project, source=result["source"][:300], model=result["model"][:100],
        batch_size=result["batch_size"], seeds=result["seeds"],
        full_accuracy=result["full_accuracy"], curves=curves,
    )
