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

.PHONY: run test serve worker setup setup-dev migrate demo clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py load_demo

## Set up and serve the demo with embedded defaults (SQLite, filesystem broker): web + worker.
run: demo
	@echo ""
	@echo "  Open http://$(HOST):$(PORT)/  and log in as annotator/annotator (or admin/admin)."
	@echo "  API token for the demo project: $$($(PY) manage.py create_token digits --name make-run)"
	@echo ""
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$(CELERY_CONCURRENCY) & \
	$(PY) manage.py runserver $(HOST):$(PORT)

## Set up, check the layering (import-linter: apps look only down, no cycles), run the suite.
test: setup-dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

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

## A Celery worker on its own (scale out: run more of these, on more machines).
worker: setup
	$(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$(CELERY_CONCURRENCY)

clean:
	rm -rf $(VENV) var
