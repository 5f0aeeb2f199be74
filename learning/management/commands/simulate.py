"""Replay active learning on fully labeled data and report labels-to-95%/99% per strategy."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from core.errors import DomainError
from learning import features, simulation, strategies
from learning.estimators import ESTIMATORS
from learning.model_input import project_labeled_payloads
from learning.services.simulation_runs import simulation_run_record


class Command(BaseCommand):
    help = (
        "Simulate active learning on labeled data (file.csv, file.jsonl, builtin:NAME or "
        "project:SLUG) and write JSON results plus a PNG of the learning curves."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help=f"file.csv | file.jsonl | project:SLUG | builtin:"
                                           f"{'|'.join(simulation.BUILTINS)}")
        parser.add_argument("--label-column", default="label")
        parser.add_argument("--text-column")
        parser.add_argument("--kind", choices=sorted(features.FEATURIZERS))
        parser.add_argument("--strategies", default=",".join(simulation.DEFAULT_STRATEGIES),
                            help=f"comma-separated, from {','.join(strategies.BATCH_STRATEGIES)}")
        parser.add_argument("--batch-size", type=int, default=10)
        parser.add_argument("--budget", type=int, help="labels to stop at (default: 2000 or the "
                                                       "whole pool)")
        parser.add_argument("--seeds", type=int, default=5)
        parser.add_argument("--model", choices=sorted(ESTIMATORS),
                            help="estimator (default: the default for the data kind)")
        parser.add_argument("--pca", type=int, help="image kind: keep this many PCA components "
                                                    "(pixels: none by default; cnn: 50)")
        parser.add_argument("--featurizer", default="",
                            help="comma-separated, to compare: pixels|cnn for images, "
                                 "tfidf|minilm for texts (default: the kind's default); "
                                 "cnn and minilm need `make featurizers` once per machine")
        parser.add_argument("--jobs", type=int, default=1, help="parallel replays")
        parser.add_argument("--out", default="result.json")
        parser.add_argument("--png", help="learning-curve plot (default: --out with .png)")
        parser.add_argument("--project", help="record the result for this project (slug), so "
                                              "its page draws the random baseline; default: "
                                              "the project of a project:SLUG source")

    def handle(self, *args, source, label_column, text_column, kind, strategies, batch_size,
               budget, seeds, model, pca, featurizer, jobs, out, png, project, **options):
        if project is None and source.startswith("project:"):
            project = source.removeprefix("project:")
        target = _project(project) if project else None
        try:
            if source.startswith("project:"):
                dataset = _project_dataset(source.removeprefix("project:"))
            else:
                dataset = simulation.load_source(source, label_column=label_column,
                                                 text_column=text_column, kind=kind)
            names = [n.strip() for n in featurizer.split(",") if n.strip()] or [""]
            results = [simulation.simulate(
                dataset, strategies_=[s.strip() for s in strategies.split(",") if s.strip()],
                batch_size=batch_size, budget=budget, seeds=seeds, model=model, n_jobs=jobs,
                featurizer_params=_featurizer_params(name, pca, dataset.kind),
            ) for name in names]
        except (simulation.SimulationError, features.FeatureError, DomainError) as exc:
            raise CommandError(str(exc)) from exc
        for result in results:
            out_path = Path(out)
            if len(results) > 1:
                out_path = out_path.with_name(f"{out_path.stem}-{result['featurizer']}"
                                              f"{out_path.suffix}")
            simulation.write_result(result, out_path)
            png_path = (Path(png) if png and len(results) == 1
                        else out_path.with_suffix(".png"))
            simulation.plot_curves(result, png_path)
            self.stdout.write(f"featurizer {result['featurizer']} ({result['n_features']} "
                              f"features, {result['featurize_seconds']} s): full accuracy "
                              f"{result['full_accuracy']:.4f} ({result['n_pool']} pool, "
                              f"{result['n_test']} test rows)")
            for name, data in result["strategies"].items():
                self.stdout.write(f"{name:>16}: labels to 95% {data['labels_to_95']}, "
                                  f"to 99% {data['labels_to_99']}")
            self.stdout.write(f"wrote {out_path} and {png_path}")
        result = results[0]
        if target is not None:
            simulation_run_record(project=target, result=result)
            self.stdout.write(f"recorded for project {target.slug}: its page shows the "
                              "random baseline")


def _featurizer_params(name: str, pca: int | None, kind: str) -> dict | None:
    params = {"name": name} if name else {}
    if pca and kind == "image":
        params["pca_components"] = pca
    return params or None


def _project(slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise CommandError(f"no project {slug!r}")
    return project


def _project_dataset(slug: str) -> simulation.Dataset:
    project = _project(slug)
    X, y = project_labeled_payloads(project=project)
    return simulation.Dataset(f"project:{slug}", project.kind, X, y)
