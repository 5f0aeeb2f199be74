"""Settings for production: a strong secret from the environment, HTTPS-only cookies, HSTS.

Refuses to load (ImproperlyConfigured) with no ``SECRET_KEY``, the development key, a key
Django generated for a development project, or a short or repetitive one: the key signs
sessions and password-reset links, so a known key is an admin session for anyone.
"""
from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F401,F403
from config.settings.base import DEVELOPMENT_SECRET_KEY, env

# Keys this repository has published (in settings or benchmarks): never valid anywhere.
PUBLISHED_SECRET_KEYS = frozenset({
    DEVELOPMENT_SECRET_KEY,
    "bench-secret-key-not-for-production-use-0123456789",
})
SECRET_KEY_MIN_LENGTH = 50  # as Django's deploy check (security.W009)
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
_HOW = ("set SECRET_KEY to a long random value, e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`")


def secret_key_refusal(key: str) -> str | None:
    """Why ``key`` must not sign production sessions, or None when it may."""
    if not key:
        return "SECRET_KEY is not set"
    if key in PUBLISHED_SECRET_KEYS or key.startswith("django-insecure-"):
        return "SECRET_KEY is a published development key"
    if len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return (f"SECRET_KEY is too weak (needs at least {SECRET_KEY_MIN_LENGTH} characters, "
                f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different)")
    return None


SECRET_KEY = env("SECRET_KEY", default="")
if (_refusal := secret_key_refusal(SECRET_KEY)) is not None:
    raise ImproperlyConfigured(f"{_refusal}: {_HOW}")

PRODUCTION = True
DEBUG = False
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
# HTTPS. Browsers that reached the site over HTTPS keep to HTTPS for a year (HSTS; Django
# sends the header on HTTPS responses only). Behind a proxy that terminates TLS, set
# TRUST_X_FORWARDED_PROTO=true (only if the proxy sets X-Forwarded-Proto and drops the
# client's own) so Django knows the request came over HTTPS. The proxy should redirect
# http:// to https://; SECURE_SSL_REDIRECT=true makes Django do it when nothing else does.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
STORAGES = {
    **STORAGES,  # noqa: F405 (the local disk, or the bucket of STORAGE_URL)
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
