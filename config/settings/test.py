"""Settings for the test suite: eager Celery, fast hashing, synchronous prediction logs."""
from config.settings.base import *  # noqa: F401,F403

DEBUG = False
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PREDICTION_LOG_BUFFERED = False
