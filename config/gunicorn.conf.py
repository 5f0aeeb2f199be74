"""gunicorn settings for `make serve`; every value can be overridden from the environment."""
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count()))
# Threads keep keep-alive connections open (sync workers close every connection) and let a
# worker overlap a model call with I/O of other requests.
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 30
timeout = 60
accesslog = os.environ.get("ACCESS_LOG", None)
preload_app = False
