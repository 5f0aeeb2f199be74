"""Settings for the test suite: eager Celery, fast hashing, synchronous prediction logs."""
from config.settings.base import *  # noqa: F401,F403

DEBUG = False
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PREDICTION_LOG_BUFFERED = False

# API settings (serving app): look the served version up on every request, so tests that
# promote see the change at once; tests of the 1-second window set it back explicitly.
SERVING_MODEL_CHECK_SECONDS = 0.0
# End of API settings.
