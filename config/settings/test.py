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
API_TOKEN_CACHE_SECONDS = 0.0  # likewise for revocations; tests of the window set it
# End of API settings.

# A file, not Django's in-memory SQLite test database: with an in-memory database the live
# server's threads share one connection, which would hide the locking the queue relies on.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    import os as _os
    import tempfile as _tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": _os.path.join(_tempfile.gettempdir(), f"annotation-test-{_os.getpid()}.sqlite3")
    }
