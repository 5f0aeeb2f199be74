"""The simulate command replays active learning on labeled data and reports labels saved."""
import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from learning import simulation


def _tabular_frame(n=90, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    return pd.DataFrame({
        "size": label * 2.0 + rng.normal(0, 0.5, n),
        "colour": np.array(["red", "green", "blue"])[label],
        "noise": rng.normal(size=n),
        "label": np.array(["a", "b", "c"])[label],
    })


def test_simulate_reports_full_accuracy_and_labels_to_targets_per_strategy():
    dataset = simulation.load_builtin("iris")
    result = simulation.simulate(dataset, strategies_=["random", "default"], batch_size=10,
                                 budget=40, seeds=2)
    assert 0.8 < result["full_accuracy"] <= 1
    assert result["n_test"] == 45 and result["budget"] == 40
    for data in result["strategies"].values():
        assert {"labels_to_95", "labels_to_99", "curve"} <= set(data)
        assert [n for n, _acc in data["curve"]] == [10, 20, 30, 40]
        assert data["labels_to_95"] is None or 10 <= data["labels_to_95"] <= 40
        # one area per seed; their mean is the area of the mean curve (same label counts)
        assert len(data["area_by_seed"]) == 2
        mean_curve_area = simulation.curve_area(*zip(*data["curve"]))
        assert abs(np.mean(data["area_by_seed"]) - mean_curve_area) < 1e-4


def test_curve_area_is_the_mean_accuracy_over_the_label_range():
    assert simulation.curve_area([10, 20, 40], [0.5, 0.7, 0.7]) == pytest.approx(
        (10 * 0.6 + 20 * 0.7) / 30, abs=1e-5)
    assert simulation.curve_area([10], [0.8]) == 0.8


def test_simulate_command_writes_json_and_png(tmp_path):
    out = tmp_path / "result.json"
    call_command("simulate", "builtin:iris", "--strategies", "random,margin", "--seeds", "2",
                 "--budget", "30", "--batch-size", "10", "--out", str(out))
    result = json.loads(out.read_text())
    assert set(result["strategies"]) == {"random", "margin"} and "full_accuracy" in result
    assert len(result["strategies"]["margin"]["curve_macro_f1"]) == 3
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_command_reads_csv_with_categories_and_missing_cells(tmp_path):
    frame = _tabular_frame()
    frame.loc[::7, "size"] = np.nan
    frame.loc[::5, "colour"] = np.nan
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "r.json"
    call_command("simulate", str(path), "--label-column", "label", "--strategies", "default",
                 "--seeds", "1", "--budget", "20", "--out", str(out), "--model", "random_forest")
    assert json.loads(out.read_text())["full_accuracy"] > 0.6


def test_jsonl_rows_may_lack_columns(tmp_path):
    rows = _tabular_frame().to_dict("records")
    for row in rows[::4]:
        del row["noise"]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    dataset = simulation.load_source(str(path), label_column="label")
    result = simulation.simulate(dataset, strategies_=["margin"], budget=20, seeds=1)
    assert result["kind"] == "tabular" and result["n_features"] >= 5


def test_text_file_with_empty_texts_simulates(tmp_path):
    texts, labels = simulation.topics_corpus(n=120)
    texts[::9] = [""] * len(texts[::9])
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    dataset = simulation.load_source(str(path), label_column="label", text_column="text")
    result = simulation.simulate(dataset, strategies_=["default"], budget=30, seeds=1)
    assert result["kind"] == "text" and result["full_accuracy"] > 0.3


def test_topics_corpus_is_deterministic():
    assert simulation.topics_corpus(n=50)[0] == simulation.topics_corpus(n=50)[0]


def test_bad_sources_give_clear_errors(tmp_path):
    one_class = tmp_path / "one.csv"
    pd.DataFrame({"x": range(30), "label": ["a"] * 30}).to_csv(one_class, index=False)
    with pytest.raises(CommandError, match="only one class"):
        call_command("simulate", str(one_class), "--out", str(tmp_path / "o.json"))
    with pytest.raises(CommandError, match="no label column 'y'"):
        call_command("simulate", str(one_class), "--label-column", "y",
                     "--out", str(tmp_path / "o.json"))
    with pytest.raises(CommandError, match="unknown builtin"):
        call_command("simulate", "builtin:imagenet", "--out", str(tmp_path / "o.json"))
    with pytest.raises(CommandError, match="no such file"):
        call_command("simulate", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.json"))
    with pytest.raises(simulation.SimulationError, match="unknown strategy"):
        simulation.simulate(simulation.load_builtin("iris"), strategies_=["vibes"])


@pytest.mark.django_db
def test_simulate_project_replays_labeled_samples(project, annotator, make_samples, tmp_path):
    from tests.factories import label_given

    for i, sample in enumerate(make_samples(30, 12)):
        label_given(sample=sample, annotator=annotator, value=project.labels[i % 3])
    out = tmp_path / "p.json"
    call_command("simulate", f"project:{project.slug}", "--strategies", "random,default",
                 "--seeds", "1", "--budget", "20", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["kind"] == "image" and result["n_pool"] + result["n_test"] == 42
    # A project: source is recorded for that project, with both curves per strategy.
    run = project.simulation_runs.get()
    assert set(run.curves) == {"random", "default"} and run.seeds == 1
    assert run.curves["random"]["accuracy"] == result["strategies"]["random"]["curve"]
    assert [n for n, _f1 in run.curves["random"]["macro_f1"]] == [10, 20]
    assert all(0 <= f1 <= 1 for _n, f1 in run.curves["default"]["macro_f1"])
    with pytest.raises(CommandError, match="no project"):
        call_command("simulate", "project:missing", "--out", str(out))
