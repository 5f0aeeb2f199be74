# Two commands on a fresh machine: `make run` (demo) and `make test` (suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_WORKERS ?= 2
WEB_THREADS ?= 2
SERVER ?= granian
CELERY_CONCURRENCY ?= 2
# pytest-xdist workers for `make test` (0: one process): the first pass, and the integration
# pass, whose tests mostly wait on their Celery workers (each test process gets a Redis
# database of its own: tests/integration/conftest.py).
TEST_WORKERS ?= 2
INTEGRATION_WORKERS ?= 2

.PHONY: run test serve worker beat setup setup-dev migrate demo clean featurizers

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements-onnx.txt requirements-featurizers.txt $(VENV)/.installed
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed-featurizers: requirements-featurizers.txt $(VENV)/.installed
	$(PIP) install --quiet --disable-pip-version-check -r requirements-featurizers.txt
	touch $@

## The pretrained featurizers (CNN features for images, MiniLM for texts), once per machine:
## onnxruntime and tokenizers in the service's venv; torch only in a venv of its own under
## ~/.cache/annotation-service/venvs, which exports the CNN to ONNX into FEATURIZER_DIR
## (default ~/.cache/annotation-service/featurizers) beside MiniLM's files, with a
## sha256 manifest. A second run with the same pins does nothing.
featurizers: $(VENV)/.installed-featurizers
	$(PY) -m learning.pretrained.install

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py load_demo

## Set up and serve the demo with embedded defaults (SQLite, filesystem broker): web, worker
## and beat (the scheduler: rules every minute, the daily log pruning, per-project cron jobs).
# Stopping (Ctrl-C, or SIGTERM/SIGHUP to make): the shell's trap sends SIGTERM once to each
# of the three (Celery's warm shutdown; runserver's parent takes its reloader child along) and
# waits for them; a second signal turns the workers' stops into cold shutdowns. All run in
# the background, so a signal interrupts `wait` at once (a foreground child holds the trap
# back), and the worker and beat run in their own process groups, so signals meant for the whole group
# (Ctrl-C, `kill -- -PGID`) reach only its main process through the trap: a pool child
# killed by SIGTERM can leave Celery waiting forever on the pool's queue lock. Not `kill 0`
# either, which signals this shell too and so re-enters its own trap until it crashes.
# A stop asked for by a signal exits 0 (make still reports the signal: 130 on Ctrl-C).
run: demo
	@echo ""
	@echo "  Open http://$(HOST):$(PORT)/  and log in as annotator/annotator (or admin/admin)."
	@echo "  API token for the demo project: $$($(PY) manage.py create_token digits --name make-run)"
	@echo ""
	@$(PY) -c 'import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])' \
	  $(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$(CELERY_CONCURRENCY) & \
	worker=$$!; \
	$(PY) -c 'import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])' \
	  $(VENV)/bin/celery -A config beat --loglevel=INFO & \
	beat=$$!; \
	$(PY) manage.py runserver $(HOST):$(PORT) & \
	web=$$!; \
	stop() { trap 'kill -QUIT $$worker $$beat 2>/dev/null' HUP INT TERM; kill -TERM $$web $$worker $$beat 2>/dev/null; }; \
	trap 'asked=0; stop' HUP INT TERM; \
	wait $$web; status=$$?; \
	[ -n "$$asked" ] || stop; \
	until wait; do :; done; \
	exit $${asked:-$$status}

## Set up, check the layering (import-linter: apps look only down, no cycles), run the suite
## in two passes: everything but the integration tests on TEST_WORKERS processes, then the
## integration tests (real Celery workers, timeouts) alone, on INTEGRATION_WORKERS. Both
## passes always run; the first failure's status is the result, and "no tests" (5) only
## when neither pass found any.
test: setup-dev
	$(VENV)/bin/lint-imports
	@first=0; second=0; \
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not integration" $(PYTEST_ARGS) || first=$$?; \
	$(PY) -m pytest -n $(INTEGRATION_WORKERS) --dist worksteal -m integration $(PYTEST_ARGS) \
	  || second=$$?; \
	for status in $$first $$second; do \
	  case $$status in 0|5) ;; *) exit $$status ;; esac; \
	done; \
	[ $$first -eq 5 ] && [ $$second -eq 5 ] && exit 5; exit 0

## Production server: granian (Rust HTTP, keep-alive, TCP_NODELAY) running the WSGI app with
## WEB_WORKERS processes of WEB_THREADS threads; `make serve SERVER=gunicorn` for gunicorn
## with config/gunicorn.conf.py.
serve: migrate
	DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-config.settings.production} $(PY) manage.py collectstatic --noinput -v0
ifeq ($(SERVER),gunicorn)
	DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-config.settings.production} \
	  HOST=$(HOST) PORT=$(PORT) WEB_WORKERS=$(WEB_WORKERS) WEB_THREADS=$(WEB_THREADS) \
	  $(VENV)/bin/gunicorn config.wsgi --config config/gunicorn.conf.py
else
	DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-config.settings.production} \
	  $(VENV)/bin/granian --interface wsgi --host $(HOST) --port $(PORT) \
	  --workers $(WEB_WORKERS) --blocking-threads $(WEB_THREADS) --no-ws \
	  --log-level warning config.wsgi:application
endif

## A Celery worker on its own (scale out: run more of these, on more machines). QUEUES picks
## the kinds of work it takes (default, imports, training, scoring; comma-separated): all by
## default, e.g. `make worker QUEUES=scoring` for a scoring-only machine.
QUEUES ?= default,imports,training,scoring
worker: setup
	$(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$(CELERY_CONCURRENCY) -Q $(QUEUES)

## The scheduler (django-celery-beat's DatabaseScheduler, set in config): run exactly one,
## beside any number of workers; two would send every scheduled task twice.
beat: migrate
	$(VENV)/bin/celery -A config beat --loglevel=INFO

clean:
	rm -rf $(VENV) var
