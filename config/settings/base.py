"""Settings shared by every environment, all read from environment variables.

The defaults are the embedded configuration: SQLite, kombu's filesystem broker and local
media under ``var/``, so the service runs with no server installed.
"""
import os
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from kombu import Queue

from core.storage import storages_from_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

# The development key is public (it is in this file): the production settings refuse it.
DEVELOPMENT_SECRET_KEY = "insecure-dev-key-change-me-in-production"
SECRET_KEY = env("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
PRODUCTION = False  # True in config.settings.production: load_demo refuses to run there
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "django_celery_beat",
    "core",
    "annotation",
    "learning",
    "serving",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while a writer commits; the busy timeout makes concurrent
    # writers queue instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Throttle counters and other shared state: per process by default; point CACHE_URL at
# Redis (redis://host:6379/1) so every web process shares them.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before checking it
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve straight from the app folders until collectstatic ran
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=20 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["annotation.authentication.ProjectTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Active-learning annotation service API",
    "DESCRIPTION": "Predict with the served model of a project. Authenticate with "
    "`Authorization: Token <key>`; keys are per project.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Named, rather than a hash suffix on "StatusEnum" (drf_spectacular.W001 in check --deploy).
    "ENUM_NAME_OVERRIDES": {
        "ErrorCodeEnum": "core.serializers.ERROR_CODE_CHOICES",
        "ModelVersionStatusEnum": ["queued", "training", "ready", "failed"],
    },
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_DIR = Path(env("CELERY_BROKER_DIR", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu puts every folder it is not given under the working directory (control/ holds
    # the exchange tables), so name them all: the broker's files stay in CELERY_BROKER_DIR.
    for _folder in ("out", "processed", "control"):
        (CELERY_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "out"),
        "data_folder_out": str(CELERY_BROKER_DIR / "out"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
# Queues by kind of work, so a long import never delays a retrain and scoring can get
# machines of its own. A worker started without -Q consumes all of them; `make worker
# QUEUES=scoring` (celery's -Q) only some. Tasks not named below go to "default".
CELERY_TASK_QUEUE_NAMES = ("default", "imports", "training", "scoring")
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = tuple(Queue(name, routing_key=name) for name in CELERY_TASK_QUEUE_NAMES)
CELERY_TASK_ROUTES = {
    "annotation.tasks.import_job_run_task": {"queue": "imports", "routing_key": "imports"},
    "learning.tasks.model_version_train_task": {"queue": "training", "routing_key": "training"},
    "learning.tasks.pool_cold_start_task": {"queue": "training", "routing_key": "training"},
    "learning.tasks.pool_score_chunk_task": {"queue": "scoring", "routing_key": "scoring"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
# Reliability (README "Reliability"): a message is acknowledged when its task is done, not
# when it is received; a task whose pool process died (killed, out of memory) is put back
# in the queue instead of being acknowledged as failed; a worker started while the broker
# is down waits for it instead of exiting.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # An unacknowledged message (its worker died) comes back after this; longer than
        # any task may run, so a running task is never handed to a second worker.
        "visibility_timeout": CELERY_TASK_TIME_LIMIT + 5 * 60,
        # A broker host that does not answer fails a send in seconds instead of hanging
        # the request that sends it.
        "socket_connect_timeout": 5,
    }
# The retrain cycle heals itself (learning/services/healing.py): a task training a version
# or scoring its pool stamps a heartbeat every RETRAIN_HEARTBEAT_SECONDS; silent for
# RETRAIN_LOST_AFTER_SECONDS, its worker counts as lost and the version is re-queued (up to
# RETRAIN_MAX_ATTEMPTS claims) or its chunks sent again; a queued version no worker took
# for RETRAIN_REDISPATCH_SECONDS, or that never reached the broker, is sent again. Every
# worker sweeps at start and every RETRAIN_SWEEP_SECONDS (0: never).
RETRAIN_HEARTBEAT_SECONDS = env.float("RETRAIN_HEARTBEAT_SECONDS", default=10.0)
RETRAIN_LOST_AFTER_SECONDS = env.float("RETRAIN_LOST_AFTER_SECONDS", default=60.0)
RETRAIN_SWEEP_SECONDS = env.float("RETRAIN_SWEEP_SECONDS", default=30.0)
RETRAIN_REDISPATCH_SECONDS = env.float("RETRAIN_REDISPATCH_SECONDS", default=120.0)
RETRAIN_MAX_ATTEMPTS = env.int("RETRAIN_MAX_ATTEMPTS", default=3)

# Domain settings.
LEASE_SECONDS = env.int("LEASE_SECONDS", default=600)
PREDICT_MAX_INSTANCES = env.int("PREDICT_MAX_INSTANCES", default=1000)
PREDICTION_LOG_FLUSH_SECONDS = env.float("PREDICTION_LOG_FLUSH_SECONDS", default=1.0)
PREDICTION_LOG_BUFFERED = env.bool("PREDICTION_LOG_BUFFERED", default=True)
# Monitoring's work on the predict path: the writer's per-minute and per-hour rollups and the
# Prometheus predict counters. Off, raw prediction logs are still written (feedback needs
# them) and `manage.py rollups_rebuild` can fill the rollups from them later.
PREDICTION_ROLLUPS = env.bool("PREDICTION_ROLLUPS", default=True)
# Raw prediction-log rows older than this are pruned (prune_prediction_logs, or the daily
# Celery beat task); the per-minute monitoring rollups are kept. 0: keep raw rows for ever.
PREDICTION_LOG_RETENTION_DAYS = env.int("PREDICTION_LOG_RETENTION_DAYS", default=30)
# Celery beat keeps its schedule in the database (django-celery-beat), so `celery -A config
# beat` needs no flag, the per-project cron jobs of the Settings page are rows, and the
# entries below are written there when beat starts. Run exactly one beat.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "prune-prediction-logs": {"task": "serving.tasks.prediction_logs_prune_task",
                              "schedule": 24 * 3600.0},
    # KPI rules (serving/rules/): every enabled rule of every project, once a minute.
    "rules-evaluate": {"task": "serving.tasks.rules_evaluate_task",
                       "schedule": env.float("RULES_EVALUATE_SECONDS", default=60.0)},
}
# A rule whose metric has had no data this long (since it was created, edited or last had
# data) is switched off with the reason, until edited: it cannot watch anything as written.
RULES_NO_DATA_HOURS = env.float("RULES_NO_DATA_HOURS", default=24.0)
# Mail (rule alerts go to project owners): EMAIL_URL as django-environ reads it, e.g.
# smtp+tls://user:password@mail.example.org:587; the default prints mail to the log.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="annotation@localhost")
# Monitoring: predictions below this confidence count as low-confidence.
MONITORING_LOW_CONFIDENCE = env.float("MONITORING_LOW_CONFIDENCE", default=0.5)
# Input drift of a (project, version, window) is computed from thousands of logged inputs
# and fresh this long; then still answered while a background thread computes the next
# (0: computed on every read).
MONITORING_DRIFT_CACHE_SECONDS = env.int("MONITORING_DRIFT_CACHE_SECONDS", default=60)
# Prometheus (GET /metrics): every web process writes its counters under this folder
# (prometheus-client's multiprocess mode; empty it when the server starts). It must be in
# the environment before prometheus_client is first imported, hence set here.
PROMETHEUS_MULTIPROC_DIR = Path(env("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus")))
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(PROMETHEUS_MULTIPROC_DIR))
# Addresses that may scrape /metrics without a token (all projects); a token with the
# 'monitor' scope sees its own project's series.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=20_000_000)
TRAINING_STALE_SECONDS = CELERY_TASK_TIME_LIMIT + 60

# Import limits (annotation app: uploads, archives, images, rows).
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=2 * 1024**3)
IMPORT_MAX_ZIP_ENTRIES = env.int("IMPORT_MAX_ZIP_ENTRIES", default=100_000)
IMPORT_MAX_ZIP_BYTES = env.int("IMPORT_MAX_ZIP_BYTES", default=4 * 1024**3)  # uncompressed total
IMPORT_MAX_IMAGE_BYTES = env.int("IMPORT_MAX_IMAGE_BYTES", default=20 * 1024**2)
IMPORT_IMAGE_FORMATS = env.list("IMPORT_IMAGE_FORMATS", default=["PNG", "JPEG", "GIF", "WEBP", "BMP"])
IMPORT_MAX_TEXT_CHARS = env.int("IMPORT_MAX_TEXT_CHARS", default=100_000)
IMPORT_BATCH_ROWS = env.int("IMPORT_BATCH_ROWS", default=10_000)
IMPORT_REPORT_MAX_ERRORS = env.int("IMPORT_REPORT_MAX_ERRORS", default=100)
IMPORT_INLINE_MAX_BYTES = env.int("IMPORT_INLINE_MAX_BYTES", default=1024**2)  # smaller: no Celery
THUMBNAIL_SIZE = env.int("THUMBNAIL_SIZE", default=128)
# End of import limits.

# API settings (serving app: body limits, throttle rates, model cache).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=10 * 1024**2)  # 413 above, unparsed
PREDICT_MAX_TOTAL_PIXELS = env.int("PREDICT_MAX_TOTAL_PIXELS", default=100_000_000)  # per request
# Per token; "<n>/<s|min|h|day>". Counters live in the default cache (per process unless
# CACHES points at a shared backend such as Redis).
API_THROTTLE_RATES = {
    "predict": env("API_THROTTLE_PREDICT", default="6000/min"),
    "feedback": env("API_THROTTLE_FEEDBACK", default="600/min"),
    "admin": env("API_THROTTLE_ADMIN", default="60/min"),
    "read": env("API_THROTTLE_READ", default="600/min"),
    # Each export streams the whole project: a handful a minute, not a reader's rate.
    "export": env("API_THROTTLE_EXPORT", default="10/min"),
}
# How long a process trusts its last look-up of a project's served version; keep it well
# under 1 s so promotions reach every process within a second.
SERVING_MODEL_CHECK_SECONDS = env.float("SERVING_MODEL_CHECK_SECONDS", default=0.5)
SERVING_PINNED_MODELS = env.int("SERVING_PINNED_MODELS", default=4)  # ?version=N, LRU per process
# How long a process remembers a successful token check (revocation reaches it within this).
API_TOKEN_CACHE_SECONDS = env.float("API_TOKEN_CACHE_SECONDS", default=1.0)
# Successful predictions keep each instance up to this size (bytes of JSON/base64) on their
# log row, so feedback can quote just the prediction id; larger ones must be resent. 0: never.
PREDICTION_LOG_INSTANCE_MAX_BYTES = env.int("PREDICTION_LOG_INSTANCE_MAX_BYTES", default=32 * 1024)
# End of API settings.

# Security (README "Security"): guessing limits, client addresses, Content-Security-Policy.
# Proxies in front of the web processes that append to X-Forwarded-For (0: none, the
# client's address is REMOTE_ADDR). Login lockouts and API-key limits count per address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT
# Failed API-key checks per client address in a sliding minute before 429 (0: no limit).
API_AUTH_FAILURES_PER_MIN = env.int("API_AUTH_FAILURES_PER_MIN", default=30)
# Failed logins (django-axes, core/logins.py): per username and address, per address.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_ADDRESS_FAILURE_LIMIT = env.int("LOGIN_ADDRESS_FAILURE_LIMIT", default=30)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]  # order: core/logins.py
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_HANDLER = "core.logins.LoginAttempts"
AXES_LOCKOUT_CALLABLE = "core.logins.lockout_response"
AXES_CLIENT_IP_CALLABLE = "core.throttling.client_address"
AXES_RESET_ON_SUCCESS = False  # True would let a login to one's own account clear the address count
AXES_VERBOSE = False
# Pages load scripts, styles and images from this site only: no inline code, no eval.
# The API docs page adds data: images (config/urls.py). The JSON API (/api/v1/) goes
# without: it renders no HTML (nosniff), and the labeling fast path answers it like Django.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/v1/"],
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# End of security settings.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # django-axes: failed logins and lockouts (WARNING), not every successful one.
        "axes": {"level": "WARNING"},
    },
}
ARTIFACT_ROOT = Path(env("ARTIFACT_ROOT", default=str(MEDIA_ROOT / "artifacts")))
# Files that must outlive a process go through Django's storage API (core/storage.py): the
# local disk (MEDIA_ROOT, ARTIFACT_ROOT) by default, an S3-compatible bucket with
# STORAGE_URL=s3://bucket/prefix, so web and worker machines share nothing but the
# database, the broker and the bucket.
STORAGE_URL = env("STORAGE_URL", default="")
STORAGES = {
    **storages_from_url(
        STORAGE_URL,
        endpoint_url=env("AWS_S3_ENDPOINT_URL", default=""),
        region_name=env("AWS_S3_REGION_NAME", default=""),
        access_key=env("AWS_ACCESS_KEY_ID", default=""),
        secret_key=env("AWS_SECRET_ACCESS_KEY", default=""),
    ),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Per-machine caches rebuilt from the database when missing: featurized rows, artifacts
# downloaded from the bucket. Never shared between machines.
LOCAL_CACHE_DIR = Path(env("LOCAL_CACHE_DIR", default=str(ARTIFACT_ROOT)))
# Bound of the pretrained embeddings kept under LOCAL_CACHE_DIR/embeddings (all featurizers
# together); the oldest segments are evicted first (learning/pretrained/embedding_cache.py).
# 2 GB holds about 400,000 CNN or 1.4 million MiniLM embeddings; 0 keeps none.
EMBEDDING_CACHE_MAX_MB = env.float("EMBEDDING_CACHE_MAX_MB", default=2048.0)
# The pretrained featurizers' files (CNN and MiniLM ONNX models, tokenizer), installed once
# per machine by `make featurizers` and checked by sha256 before loading; never downloaded
# at run time. Web and workers read them here (learning/pretrained/files.py).
FEATURIZER_DIR = Path(env("FEATURIZER_DIR", default=str(
    Path.home() / ".cache" / "annotation-service" / "featurizers")))
