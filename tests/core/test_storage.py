"""STORAGE_URL picks where files live: the local disk, or an S3 bucket under a prefix."""
import pytest
from django.core.exceptions import ImproperlyConfigured

from core.storage import storages_from_url


def test_no_url_keeps_files_on_the_local_disk():
    storages = storages_from_url("", endpoint_url="", region_name="", access_key="",
                                 secret_key="")
    assert storages["default"]["BACKEND"].endswith("FileSystemStorage")
    assert storages["artifacts"]["BACKEND"] == "core.storage.ArtifactRootStorage"


def test_an_s3_url_puts_media_and_artifacts_under_its_prefix_privately():
    storages = storages_from_url("s3://bucket/team/a/", endpoint_url="http://s3.local:9000",
                                 region_name="eu-west-1", access_key="k", secret_key="s")
    media, artifacts = storages["default"]["OPTIONS"], storages["artifacts"]["OPTIONS"]
    assert storages["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert (media["bucket_name"], media["location"]) == ("bucket", "team/a/media")
    assert artifacts["location"] == "team/a/artifacts"
    assert media["endpoint_url"] == "http://s3.local:9000" and media["region_name"] == "eu-west-1"
    assert media["default_acl"] is None and media["querystring_auth"] is True
    assert media["file_overwrite"] is False


@pytest.mark.parametrize("url", ["/var/data", "s3://", "gs://bucket/x", "bucket/prefix"])
def test_anything_but_an_s3_url_is_refused_at_start(url):
    with pytest.raises(ImproperlyConfigured, match="s3://bucket/prefix"):
        storages_from_url(url, endpoint_url="", region_name="", access_key="", secret_key="")


def test_the_local_artifact_store_follows_artifact_root(settings, tmp_path):
    from core.storage import artifact_storage

    settings.ARTIFACT_ROOT = tmp_path / "elsewhere"
    assert artifact_storage().location == str(tmp_path / "elsewhere")
