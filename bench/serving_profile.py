"""The predict request path in process, per kind: CPU per request against the model call.

One command (from the repository root):

    .venv/bin/python bench/serving_profile.py [--kinds image,tabular,text] [--rows 1,100]
        [--requests 400] [--profile KIND:ROWS] [--top 30]

For each kind of ``bench/serving_kinds.py`` it trains the project as ``bench/serving.py``
does (production settings, a fresh SQLite file), then calls the WSGI application of
``config/wsgi.py`` directly, with the token, throttle, prediction logging and monitoring
rollups on, and compares per request:

- ``request``: CPU of the request (``time.thread_time``, so other load on the machine
  barely moves it), from the WSGI call to the last byte of the answer;
- ``log``: CPU of writing the logged rows and rollups, which the writer thread does once a
  second in a server (here: one flush after all requests, divided by their number);
- ``model``: the served (compiled) ``predict_proba`` + JSON in process, what
  ``bench/serving.py`` calls the in-process reference.

``--profile image:1`` also runs that case's requests under cProfile and prints the
functions with the most time of their own, and cumulative, then the same for the log
writer's flush of those requests. Nothing here is a throughput
figure: HTTP parsing and the server's threads are not included (see bench/serving.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import serving_kinds as kinds  # noqa: E402


def _environment(workdir: Path, database_url: str | None) -> None:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url or f"sqlite:///{workdir / 'db.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "API_THROTTLE_PREDICT": "1000000000/min",
        "PREDICTION_LOG_FLUSH_SECONDS": "3600",  # flushed here, and timed, by hand
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
    })


def _caller(app, path: str, key: str, body: bytes):
    """A function making one request; returns its status line and body."""
    base = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Token {key}", "HTTP_HOST": "127.0.0.1",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    status = []

    def start_response(line, headers, exc_info=None):
        status.append(line)

    def call() -> tuple[str, bytes]:
        status.clear()
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(body)
        chunks = app(environ, start_response)
        content = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        return status[0], content

    return call


def _cpu_ms(call, repeats: int) -> dict:
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.thread_time(), time.perf_counter()
        call()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_ms_median": 1000 * statistics.median(cpu), "cpu_ms_min": 1000 * min(cpu),
            "wall_ms_median": 1000 * statistics.median(wall)}


def _model_call(kind: str, estimator, rows: int):
    """The in-process reference of bench/serving_kinds.raw_figures: served proba + JSON."""
    import numpy as np
    import orjson

    from serving.model_cache import lean_predict_proba

    api_instances, model_input = kinds.instances(kind, rows)
    served = lean_predict_proba(estimator)
    served_input = ([i["text"] for i in api_instances] if kind == "text" else
                    model_input if kind != "image" else model_input.astype(np.float32))
    labels = [str(c) for c in estimator.classes_]

    def call():
        proba = served(served_input)
        return orjson.dumps([{"label": labels[int(p.argmax())], "confidence": float(p.max()),
                              "probabilities": dict(zip(labels, p.tolist()))} for p in proba])

    return call


def _profiled(call, repeats: int, top: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        call()
    profiler.disable()
    for order in ("tottime", "cumulative"):
        stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats(order)
        print(f"--- {order}, {repeats} requests")
        stats.print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default=",".join(kinds.KINDS))
    parser.add_argument("--rows", default="1,100")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--profile", action="append", default=[], help="KIND:ROWS, repeatable")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--app", choices=["wsgi", "django"], default="wsgi",
                        help="config/wsgi.py's application (fast paths included), or Django's alone")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--database-url", default=None,
                        help="default: a fresh SQLite file (an empty database: it is migrated)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-profile-"))
    _environment(workdir, args.database_url)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from config import wsgi

    application = wsgi.application if args.app == "wsgi" else wsgi.django_application
    from serving.prediction_log import prediction_log_flush

    results = {}
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        made = kinds.setup_project(kind)
        gc.collect()  # a server's workers start with what setup left behind out of sight
        gc.freeze()
        path = f"/api/v1/projects/{kinds.slug(kind)}/predict"
        for rows in [int(r) for r in args.rows.split(",")]:
            body = json.dumps({"instances": kinds.instances(kind, rows)[0]}).encode()
            request = _caller(application, path, made["key"], body)
            status, content = request()
            assert status.startswith("200"), (status, content[:300])
            for _ in range(20):
                request()
            prediction_log_flush()
            figures = _cpu_ms(request, args.requests)
            c0 = time.thread_time()
            prediction_log_flush()
            figures["log_cpu_ms"] = 1000 * (time.thread_time() - c0) / args.requests
            model = _model_call(kind, made["estimator"], rows)
            reference = _cpu_ms(model, args.requests)
            figures["model_cpu_ms_median"] = reference["cpu_ms_median"]
            figures["overhead_cpu_ms"] = (figures["cpu_ms_median"] + figures["log_cpu_ms"]
                                          - reference["cpu_ms_median"])
            results[f"{kind}:{rows}"] = figures
            print(f"{kind:8s} rows={rows:<4d} request {figures['cpu_ms_median']:7.3f} ms CPU "
                  f"(min {figures['cpu_ms_min']:.3f}, wall {figures['wall_ms_median']:.3f}) + log "
                  f"{figures['log_cpu_ms']:.3f}; model+JSON {reference['cpu_ms_median']:.3f}; "
                  f"overhead {figures['overhead_cpu_ms']:.3f} ms", flush=True)
            if f"{kind}:{rows}" in args.profile:
                _profiled(request, args.requests, args.top)
                print(f"--- the log writer's flush of those {args.requests} requests")
                _profiled(prediction_log_flush, 1, args.top)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
