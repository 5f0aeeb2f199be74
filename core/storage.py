"""Where files live: Django's storage API, on the local disk or in an S3-compatible bucket.

``STORAGE_URL=s3://bucket/prefix`` puts every file that must outlive a process (sample
images and thumbnails, uploaded imports, model artifacts, fitted featurizers) in the bucket,
under ``prefix/media`` and ``prefix/artifacts``; without it they stay under ``MEDIA_ROOT``
and ``ARTIFACT_ROOT``. Caches that can be rebuilt from the database (featurized rows,
downloaded artifacts) are per machine, under ``LOCAL_CACHE_DIR``.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, storages
from django.utils.functional import cached_property


class ArtifactRootStorage(FileSystemStorage):
    """The local artifact store: ``ARTIFACT_ROOT``, read when used (so an override applies)."""

    @cached_property
    def base_location(self):
        return self._value_or_setting(self._location, settings.ARTIFACT_ROOT)

    def _clear_cached_properties(self, setting, **kwargs):
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "ARTIFACT_ROOT":
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)


def storages_from_url(url: str, *, endpoint_url: str | None, region_name: str | None,
                      access_key: str | None, secret_key: str | None) -> dict:
    """The ``default`` and ``artifacts`` entries of ``STORAGES`` for ``STORAGE_URL``."""
    if not url:
        return {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "artifacts": {"BACKEND": "core.storage.ArtifactRootStorage"},
        }
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ImproperlyConfigured(
            f"STORAGE_URL must look like s3://bucket/prefix (or be empty for the local disk), "
            f"not {url!r}")
    prefix = parts.path.strip("/")
    options = {
        "bucket_name": parts.netloc,
        "endpoint_url": endpoint_url or None,
        "region_name": region_name or None,
        "access_key": access_key or None,
        "secret_key": secret_key or None,
        # Private objects; browsers get images through the permission-checked views.
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 300,
        "file_overwrite": False,
    }

    def under(folder: str) -> dict:
        location = f"{prefix}/{folder}" if prefix else folder
        return {"BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {**options, "location": location}}

    return {"default": under("media"), "artifacts": under("artifacts")}


def artifact_storage():
    """The storage of model artifacts and fitted featurizers."""
    return storages["artifacts"]


def storage_is_local(storage) -> bool:
    return isinstance(storage, FileSystemStorage)
