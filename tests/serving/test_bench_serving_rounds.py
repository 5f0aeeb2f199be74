"""bench/serving.py's comparison: per-round ratios against the fastest MLflow server of each
round, their median, and the p50 gap against the reference timed in the same round."""
from bench import serving


def _run(req_per_s: float, p50_ms: float = 1.0, cpu: float = 1.0) -> dict:
    return {"requests": 10, "errors": 0, "status_errors": 0, "req_per_s": req_per_s,
            "rows_per_s": req_per_s, "p50_ms": p50_ms, "p95_ms": p50_ms, "p99_ms": p50_ms,
            "mean_ms": p50_ms, "server_cpu_ms_per_req": cpu}


def _reference(artifact_ms: float, compiled_ms: float) -> dict:
    return {"rows": 1, "pipeline_predict_proba_json_p50_ms": artifact_ms,
            "served_predict_proba_json_p50_ms": compiled_ms, "estimator_only_p50_ms": 0.1}


def _result(points: dict) -> dict:
    """points: (rows, concurrency) -> list of per-round dicts, as measure_point returns."""
    servers: dict = {}
    for (rows, concurrency), rounds in points.items():
        for name, figures in serving.summarize(rounds, rows, concurrency).items():
            servers.setdefault(name, []).append(figures)
    return {"servers": servers}


def test_each_round_is_compared_with_its_fastest_mlflow_and_the_median_taken():
    rounds = [  # the load moves every server in a round alike; w1 and w2 take turns leading
        {"ours": _run(1000), "mlflow-w1": _run(100), "mlflow-w2": _run(50)},   # 10x
        {"ours": _run(300), "mlflow-w1": _run(20), "mlflow-w2": _run(100)},    # 3x
        {"ours": _run(2000), "mlflow-w1": _run(500), "mlflow-w2": _run(400)},  # 4x
    ]
    targets = serving.targets(_result({(1, 8): rounds}))
    single = targets["single_row_c8_ratio"]
    assert single["rounds"] == [10.0, 3.0, 4.0]
    assert single["value"] == 4.0 and single["met"]
    # Medians of the servers' own figures are kept too, rounds included.
    ours = _result({(1, 8): rounds})["servers"]["ours"][0]
    assert ours["req_per_s"] == 1000 and len(ours["rounds"]) == 3 and ours["requests"] == 30


def test_batch_ratio_below_three_is_not_met():
    rounds = [{"ours": _run(250), "mlflow-w1": _run(100), "mlflow-w2": _run(90)}] * 2
    targets = serving.targets(_result({(100, 32): rounds}))
    assert targets["rows100_c32_ratio"]["value"] == 2.5
    assert not targets["rows100_c32_ratio"]["met"]


def test_p50_gap_is_taken_against_the_reference_of_the_same_round():
    rounds = [
        {"ours": _run(500, p50_ms=2.0), "mlflow-w1": _run(100),
         "in_process": _reference(artifact_ms=1.5, compiled_ms=0.2)},   # +0.5 / +1.8
        {"ours": _run(400, p50_ms=5.0), "mlflow-w1": _run(80),
         "in_process": _reference(artifact_ms=3.0, compiled_ms=0.4)},   # +2.0 / +4.6
        {"ours": _run(450, p50_ms=2.2), "mlflow-w1": _run(90),
         "in_process": _reference(artifact_ms=1.6, compiled_ms=0.2)},   # +0.6 / +2.0
    ]
    targets = serving.targets(_result({(1, 1): rounds}))
    artifact = targets["rows1_c1_p50_minus_pipeline_ms"]
    assert artifact["rounds"] == [0.5, 2.0, 0.6] and artifact["value"] == 0.6 and artifact["met"]
    compiled = targets["rows1_c1_p50_minus_served_ms"]
    assert compiled["value"] == 2.0 and not compiled["met"]


def test_without_mlflow_only_the_latency_targets_are_checked():
    rounds = [{"ours": _run(500, p50_ms=1.0), "in_process": _reference(0.5, 0.1)}]
    assert set(serving.targets(_result({(1, 1): rounds}))) == {
        "rows1_c1_p50_minus_pipeline_ms", "rows1_c1_p50_minus_served_ms"}
