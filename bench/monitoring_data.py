"""Historical prediction logs for bench/monitoring.py, written with COPY.

Rows come as the predict API writes them: per request, one row per prediction sharing the
request's ``created_at``, latency, status, token and model version (one row without a
prediction for a refused request), with time-ordered (version 7) prediction ids as the API
makes them, so the unique index grows at its right edge as it does in production.

The mix, over ``days`` up to now (uniform in time): requests of 1 row (75%), 5 rows (20%)
and 100 rows (5%); statuses 200 (97%), 400, 429, 403 and 500; three model versions served
in turn (a third of the time each) with 5% of requests pinned to the previous one;
log-normal latencies growing with the batch; confidences from Beta(5, 1.5); ten labels,
unevenly predicted; 1% of predictions with feedback (90% right) arriving an exponential
two hours later on average; 3% keeping their instance (64 pixel values).
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

LABELS = [str(d) for d in range(10)]
LABEL_WEIGHTS = np.array([14, 12, 11, 10, 10, 9, 9, 9, 8, 8], dtype=float)
SIZES, SIZE_P = np.array([1, 5, 100]), np.array([0.75, 0.20, 0.05])
STATUSES, STATUS_P = np.array([200, 400, 429, 403, 500]), np.array([0.970, 0.012, 0.008, 0.004, 0.006])
MEDIAN_LATENCY_MS = {1: 4.0, 5: 6.0, 100: 25.0}
FEEDBACK_SHARE, FEEDBACK_RIGHT, FEEDBACK_DELAY_S = 0.01, 0.9, 2 * 3600
INSTANCE_SHARE = 0.03
CHUNK_REQUESTS = 20_000
COLUMNS = ("project_id", "model_version_id", "token_id", "outcome", "status_code", "latency_ms",
           "created_at", "note", "prediction_id", "predicted_label", "confidence", "instance",
           "true_label", "feedback_at")


@dataclass
class History:
    rows: int = 0
    requests: int = 0
    predictions: int = 0  # rows of successful requests
    feedback: int = 0
    instances: int = 0
    seconds: float = 0.0
    start: str = ""
    end: str = ""

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_per_s": round(self.rows / self.seconds) if self.seconds else None}


def _times(values_us: np.ndarray) -> np.ndarray:
    """UTC timestamps as PostgreSQL text."""
    return np.char.add(np.datetime_as_string(values_us.astype("datetime64[us]"), unit="us"), "+00")


def _outcome(status: int) -> str:
    return "ok" if status < 400 else ("client_error" if status < 500 else "server_error")


def _versions(rng, fraction: np.ndarray, version_ids: list[int]) -> np.ndarray:
    """The version each request used: the one served at that time, 5% the previous one."""
    phase = np.minimum((fraction * len(version_ids)).astype(int), len(version_ids) - 1)
    pinned = (rng.random(len(phase)) < 0.05) & (phase > 0)
    return np.asarray(version_ids)[phase - pinned]


def history_copy(dsn: str, *, table: str, project_id: int, version_ids: list[int], token_id: int,
                 rows: int, days: float, now: dt.datetime, instances: list[list[int]],
                 seed: int = 12) -> History:
    """COPY ``rows`` prediction-log rows of one project spread over ``days`` before ``now``."""
    import psycopg

    rng = np.random.default_rng(seed)
    mean_size = float((SIZES * SIZE_P).sum() * STATUS_P[0] + STATUS_P[1:].sum())
    n_max = int(rows / mean_size * 1.05) + 100
    status = rng.choice(STATUSES, size=n_max, p=STATUS_P)
    size = np.where(status < 400, rng.choice(SIZES, size=n_max, p=SIZE_P), 1)
    n_requests = int(np.searchsorted(np.cumsum(size), rows, side="left")) + 1
    status, size = status[:n_requests], size[:n_requests].copy()
    size[-1] -= int(size.sum()) - rows  # the last request ends exactly at ``rows``
    end_us = int(now.timestamp() * 1e6)
    span_us = int(days * 86400 * 1e6)
    offsets = np.sort(rng.integers(0, span_us, n_requests))
    conf_text = [f"{i / 10000:.4f}" for i in range(10001)]
    instance_text = [json.dumps({"pixels": pixels}, separators=(",", ":")) for pixels in instances]
    label_p = LABEL_WEIGHTS / LABEL_WEIGHTS.sum()
    history = History(start=str(np.datetime64(end_us - span_us, "us")) + "Z",
                      end=str(np.datetime64(end_us, "us")) + "Z")
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # no FK triggers: ids are real
        cursor.execute("SET synchronous_commit = off")
        with cursor.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for first in range(0, n_requests, CHUNK_REQUESTS):
                part = slice(first, first + CHUNK_REQUESTS)
                lines = _chunk_lines(rng, offsets[part], status[part], size[part],
                                     end_us - span_us, span_us, project_id, version_ids,
                                     token_id, label_p, conf_text, instance_text, end_us, history)
                copy.write("".join(lines).encode())
    history.seconds = round(time.perf_counter() - started, 2)
    return history


def _chunk_lines(rng, offsets, status, size, start_us, span_us, project_id, version_ids,
                 token_id, label_p, conf_text, instance_text, end_us, history: History) -> list[str]:
    n = len(offsets)
    version = _versions(rng, offsets / span_us, version_ids)
    median = np.select([size == k for k in MEDIAN_LATENCY_MS], list(MEDIAN_LATENCY_MS.values()),
                       default=MEDIAN_LATENCY_MS[1]) * np.where(status < 400, 1.0, 0.25)
    latency = median * rng.lognormal(0.0, 0.5, n)
    created_us = start_us + offsets
    created = _times(created_us)
    rand12 = rng.integers(0, 1 << 12, n)
    counter = rng.integers(0, 1 << 40, n)

    total = int(size.sum())
    labels = rng.choice(len(LABELS), size=total, p=label_p)
    confidence = np.rint(rng.beta(5, 1.5, total) * 10000).astype(int)
    feedback = rng.random(total) < FEEDBACK_SHARE
    right = rng.random(total) < FEEDBACK_RIGHT
    wrong_label = rng.integers(0, len(LABELS), total)
    keep = rng.random(total) < INSTANCE_SHARE
    which = rng.integers(0, len(instance_text), total)
    row_created_us = np.repeat(created_us, size)
    feedback_us = np.minimum(row_created_us + rng.exponential(FEEDBACK_DELAY_S * 1e6, total)
                             .astype(np.int64), end_us - 1)
    feedback_at = np.full(total, "\\N", dtype=object)
    feedback_at[feedback] = _times(feedback_us[feedback])

    # Python lists: indexing numpy arrays element by element costs several times as much.
    status, size, version = status.tolist(), size.tolist(), version.tolist()
    latency, created, created_us = latency.tolist(), created.tolist(), created_us.tolist()
    rand12, counter = rand12.tolist(), counter.tolist()
    labels, confidence, keep, which = labels.tolist(), confidence.tolist(), keep.tolist(), which.tolist()
    feedback, right, wrong_label = feedback.tolist(), right.tolist(), wrong_label.tolist()
    feedback_at = feedback_at.tolist()
    lines = []
    i = 0
    for j in range(n):
        s = status[j]
        ok = s < 400
        prefix = (f"{project_id}\t{version[j] if ok else chr(92) + 'N'}\t{token_id}\t"
                  f"{_outcome(s)}\t{s}\t{latency[j]:.3f}\t{created[j]}\t\t")
        history.requests += 1
        if not ok:
            lines.append(prefix + "\\N\t\t\\N\t\\N\t\t\\N\n")
            history.rows += 1
            i += 1
            continue
        uuid_base = (created_us[j] // 1000) << 80 | 0x7 << 76 | rand12[j] << 64 | 0b10 << 62
        first_counter = counter[j]
        for k in range(size[j]):
            label = LABELS[labels[i]]
            instance = instance_text[which[i]] if keep[i] else "\\N"
            if feedback[i]:
                true = label if right[i] else LABELS[wrong_label[i]]
                tail = f"{true}\t{feedback_at[i]}\n"
                history.feedback += 1
            else:
                tail = "\t\\N\n"
            lines.append(f"{prefix}{uuid_base | (first_counter + k):032x}\t{label}\t"
                         f"{conf_text[confidence[i]]}\t{instance}\t{tail}")
            history.instances += keep[i]
            i += 1
        history.rows += size[j]
        history.predictions += size[j]
    history.instances = int(history.instances)
    return lines
