"""Settings read from the environment: valid values parse, bad ones name the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from dealsite import env

ROOT = Path(__file__).resolve().parent.parent


def run_manage_check(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DEALSITE_VAR_DIR": str(tmp_path / "var"), **variables}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )


def test_database_url_unset_gives_sqlite_in_wal_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)

    config = env.read_database_url("DATABASE_URL", tmp_path / "db.sqlite3")

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "db.sqlite3")
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]
    assert config["OPTIONS"]["timeout"] > 0


def test_database_url_postgres_parses(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgres://deals:pw@db.internal:6543/catalogue")

    config = env.read_database_url("DATABASE_URL", tmp_path / "db.sqlite3")

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "catalogue"
    assert config["HOST"] == "db.internal"
    assert config["PORT"] == 6543


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mysql://root@localhost/deals", "unsupported scheme 'mysql'"),
        ("postgres://user:hunter22@localhost:5432", "names no database"),
        ("not a url", "unsupported scheme ''"),
        ("sqlite://", "names no database file"),
    ],
)
def test_bad_database_url_names_variable(monkeypatch, tmp_path, value, expected):
    monkeypatch.setenv("DATABASE_URL", value)

    with pytest.raises(ImproperlyConfigured) as caught:
        env.read_database_url("DATABASE_URL", tmp_path / "db.sqlite3")

    assert "DATABASE_URL=" in str(caught.value)
    assert expected in str(caught.value)
    assert "hunter22" not in str(caught.value)


def test_redis_url_accepts_database_number(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/7")

    assert env.read_redis_url("REDIS_URL") == "redis://127.0.0.1:6379/7"
    assert env.redis_db_number("redis://127.0.0.1:6379/7") == 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:6379/0", "unsupported scheme 'http'"),
        ("redis://127.0.0.1:port/0", "invalid port"),
        ("redis://127.0.0.1:6379/cache", "invalid database number 'cache'"),
        ("redis://127.0.0.1:6379/99", "invalid database number '99'"),
        ("redis://:secretpw@/0", "names no host"),
    ],
)
def test_bad_redis_url_names_variable(monkeypatch, value, expected):
    monkeypatch.setenv("REDIS_URL", value)

    with pytest.raises(ImproperlyConfigured) as caught:
        env.read_redis_url("REDIS_URL")

    assert "REDIS_URL=" in str(caught.value)
    assert expected in str(caught.value)
    assert "secretpw" not in str(caught.value)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("off", False), ("", False)])
def test_boolean_words(monkeypatch, value, expected):
    monkeypatch.setenv("DJANGO_DEBUG", value)

    assert env.read_bool("DJANGO_DEBUG", default=False) is expected


def test_bad_boolean_names_variable(monkeypatch):
    monkeypatch.setenv("DJANGO_DEBUG", "maybe")

    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG='maybe'"):
        env.read_bool("DJANGO_DEBUG", default=False)


def test_bad_numbers_name_variable(monkeypatch):
    monkeypatch.setenv("KEEPA_DOMAIN", "com")
    monkeypatch.setenv("KEEPA_MAX_DEFICIT", "lots")
    monkeypatch.setenv("KEEPA_READ_TIMEOUT", "-1")

    with pytest.raises(ImproperlyConfigured, match="KEEPA_DOMAIN='com'"):
        env.read_int("KEEPA_DOMAIN", 1)
    with pytest.raises(ImproperlyConfigured, match="KEEPA_MAX_DEFICIT='lots'"):
        env.read_float("KEEPA_MAX_DEFICIT", -180.0)
    with pytest.raises(ImproperlyConfigured, match=r"KEEPA_READ_TIMEOUT=-1\.0 is too small"):
        env.read_float("KEEPA_READ_TIMEOUT", 60.0, minimum=0.1)


def test_unknown_keepa_domain_names_choices(monkeypatch):
    monkeypatch.setenv("KEEPA_DOMAIN", "7")

    with pytest.raises(ImproperlyConfigured) as caught:
        env.read_int("KEEPA_DOMAIN", 1, choices={1: "amazon.com", 3: "amazon.de"})

    assert "KEEPA_DOMAIN=7 is not valid" in str(caught.value)
    assert "1 (amazon.com), 3 (amazon.de)" in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DATABASE_URL", "mysql://root@localhost/deals"), ("REDIS_URL", "redis://127.0.0.1:port/0")],
)
def test_manage_py_reports_bad_url_without_traceback(tmp_path, variable, value):
    completed = run_manage_check(tmp_path, **{variable: value})

    assert completed.returncode == 2
    assert f"Configuration error: {variable}=" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_check_deploy_passes_with_production_settings(tmp_path, settings):
    environment = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DEALSITE_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "p7Kq2vX9mZ4tR8wY1nB6cF3hJ5lD0sGaQeUiOzVxTyNrMkLpWjHb",
        "DJANGO_ALLOWED_HOSTS": "deals.example.com",
        "DJANGO_SECURE_HTTPS": "1",
    }
    completed = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
