"""Production refuses published or weak secret keys and the demo's known passwords; HTTPS gets HSTS."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = secrets.token_urlsafe(50)


def _python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the production settings and ``env``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environ.update(DJANGO_SETTINGS_MODULE="config.settings.production",
                   DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                   STATIC_ROOT=str(tmp_path / "static"), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


IMPORT = "import config.settings.production as s; print(s.SECRET_KEY == __import__('os').environ['SECRET_KEY'])"


@pytest.mark.parametrize("key, reason", [
    (None, "SECRET_KEY is not set"),
    ("", "SECRET_KEY is not set"),
    ("insecure-dev-key-change-me-in-production", "published development key"),
    ("bench-secret-key-not-for-production-use-0123456789", "published development key"),
    ("django-insecure-" + secrets.token_urlsafe(40), "published development key"),
    ("s3cret", "too weak"),
    ("ab" * 40, "too weak"),
], ids=["unset", "empty", "dev-key", "bench-key", "django-insecure", "short", "repetitive"])
def test_production_settings_refuse_missing_published_and_weak_keys(tmp_path, key, reason):
    env = {} if key is None else {"SECRET_KEY": key}
    run = _python(IMPORT, tmp_path, **env)
    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and reason in run.stderr


def test_production_settings_accept_a_strong_key(tmp_path):
    run = _python(IMPORT, tmp_path, SECRET_KEY=STRONG_KEY)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"


SECURITY_HEADERS = """
import django
django.setup()
from django.test import Client
for secure in (True, False):
    response = Client().get("/api/schema/", secure=secure)
    print(response.status_code, repr(response.get("Strict-Transport-Security")))
"""


def test_production_sends_hsts_over_https_only(tmp_path):
    run = _python(SECURITY_HEADERS, tmp_path, SECRET_KEY=STRONG_KEY)
    assert run.returncode == 0, run.stderr
    over_https, over_http = run.stdout.strip().splitlines()
    assert over_https == "200 'max-age=31536000; includeSubDomains'"
    assert over_http == "200 None"


def test_deploy_check_finds_only_what_readme_explains(tmp_path):
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--settings=config.settings.production"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SECRET_KEY": STRONG_KEY,
             "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    found = {line.split(")")[0].split("(")[-1] for line in run.stdout.splitlines() + run.stderr.splitlines()
             if line.startswith("?: (")}
    # README "Security": the TLS proxy redirects to HTTPS; HSTS preload is opt-in.
    assert found == {"security.W008", "security.W021"}, run.stdout + run.stderr


def test_load_demo_refuses_under_production_settings(db, settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refuses to run under the production settings"):
        call_command("load_demo", limit=20)
    assert not get_user_model().objects.filter(username="admin").exists()


def test_load_demo_forced_under_production_never_sets_the_demo_passwords(db, settings, capsys):
    User = get_user_model()
    kept = User.objects.create_user("annotator", password="annotator")  # from a demo database
    settings.PRODUCTION = True
    call_command("load_demo", limit=20, force=True)
    out = capsys.readouterr().out
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and not admin.check_password("admin")
    kept.refresh_from_db()
    assert not kept.check_password("annotator")
    shown = dict(pair.split("/") for pair in out.split("(username/password): ")[1].split(", "))
    assert set(shown) == {"admin", "annotator", "scientist"}
    assert admin.check_password(shown["admin"].strip()) and len(shown["admin"].strip()) >= 16
    # Run again: nothing to replace, no passwords shown.
    call_command("load_demo", limit=20, force=True)
    assert "random passwords" not in capsys.readouterr().out


def test_load_demo_keeps_the_known_demo_passwords_locally(db):
    call_command("load_demo", limit=20)
    assert get_user_model().objects.get(username="admin").check_password("admin")
