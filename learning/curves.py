"""The learning curve of the project page, drawn server-side as SVG: macro-F1 on the test
split against labels trained on, one point per ready version, with ticks on both axes and,
when ``simulate`` was run for the project, its random baseline (and the project's own
strategy) beside it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from annotation.models import Project
from learning.models import ModelVersion, SimulationRun

Y_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
X_SPAN = 160  # the plot is 160 x 100 units of the SVG's viewBox


@dataclass(frozen=True)
class CurvePoint:
    labels: int
    macro_f1: float
    x: float  # position in the chart, 0-X_SPAN
    y: float
    number: int | None = None  # the version, on the project's own curve


@dataclass(frozen=True)
class Series:
    key: str  # CSS class suffix: project | random | strategy
    name: str  # the legend
    points: list[CurvePoint]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x},{p.y}" for p in self.points)


@dataclass(frozen=True)
class Tick:
    value: str
    at: float  # along the axis: 0-X_SPAN (x) or 0-100 (y, from the top)


@dataclass
class LearningCurve:
    points: list[CurvePoint]  # the project's versions
    max_labels: int
    series: list[Series] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    simulation: SimulationRun | None = None

    @property
    def polyline(self) -> str:
        return self.series[0].polyline if self.series else ""


def nice_step(top: float, most: int = 5) -> int:
    """The smallest of 1, 2, 2.5, 5 × 10^k (whole numbers) that cuts 0..top into at most
    ``most`` intervals, so an axis gets 4 to 6 ticks."""
    if top <= 0:
        return 1
    magnitude = 10 ** max(0, math.floor(math.log10(top / most)))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step == int(step) and math.ceil(top / step) <= most:
            return int(step)
    return int(10 * magnitude)


def _scaled(pairs, x_top: int, numbers=None) -> list[CurvePoint]:
    numbers = numbers or [None] * len(pairs)
    return [CurvePoint(labels=int(n), macro_f1=float(f1), number=number,
                       x=round(X_SPAN * n / x_top, 2), y=round(100.0 * (1.0 - f1), 2))
            for (n, f1), number in zip(pairs, numbers) if n <= x_top]


def _simulated(run: SimulationRun, strategy: str) -> list[list[float]]:
    data = (run.curves or {}).get(strategy) or {}
    return data.get("macro_f1") or []


def learning_curve(*, project: Project) -> LearningCurve:
    """Return the project's curve, its axes and the latest simulation's baseline."""
    rows = list(
        ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY,
                                    macro_f1__isnull=False, trained_on_label_count__isnull=False)
        .order_by("number").values_list("number", "trained_on_label_count", "macro_f1")
    )
    run = SimulationRun.objects.filter(project=project).first()
    random_curve = _simulated(run, "random") if run else []
    strategy = project.query_strategy
    strategy_curve = _simulated(run, strategy) if run and strategy != "random" else []
    max_labels = max((labels for _n, labels, _f in rows), default=0)
    top = max_labels or max((n for n, _f in random_curve + strategy_curve), default=0)
    if top <= 0:
        return LearningCurve(points=[], max_labels=0)
    step = nice_step(top)
    x_top = step * math.ceil(top / step)
    points = _scaled([(labels, f1) for _n, labels, f1 in rows], x_top, [n for n, _l, _f in rows])
    series = [Series("project", "this project (macro-F1 on its test split)", points)]
    if run is not None:
        where = f"simulated on {run.source}, {run.model}, {run.seeds} seeds"
        series.append(Series("random", f"random baseline ({where})", _scaled(random_curve, x_top)))
        if strategy_curve:
            series.append(Series("strategy", f"{strategy} ({where})", _scaled(strategy_curve, x_top)))
    return LearningCurve(
        points=points, max_labels=max_labels, simulation=run,
        series=[s for s in series if s.points or s.key == "project"],
        x_ticks=[Tick(str(v), round(X_SPAN * v / x_top, 2)) for v in range(0, x_top + 1, step)],
        y_ticks=[Tick(f"{v:g}", round(100.0 * (1.0 - v), 2)) for v in Y_TICKS],
    )
