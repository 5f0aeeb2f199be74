"""gunicorn settings for `make serve SERVER=gunicorn`; every value can be overridden from the environment.

`make serve` runs granian by default: its Rust HTTP layer costs far less CPU per request
than gunicorn's Python one (measured with bench/serving.py: about 2.4x the single-row req/s
on the same two workers). gunicorn remains for deployments standardised on it.
"""
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count()))
# Threads keep keep-alive connections open (sync workers close every connection) and let a
# worker overlap a model call with I/O of other requests. gunicorn sets TCP_NODELAY on its
# listening socket, which accepted sockets inherit: no delayed-ACK stalls on keep-alive.
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 30
timeout = 60
accesslog = os.environ.get("ACCESS_LOG", None)
preload_app = False
