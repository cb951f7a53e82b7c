"""Readers for settings that come from environment variables.

Each reader validates its value and raises ImproperlyConfigured naming the
variable, the value (with any password masked) and what to do, so that a typo
in the environment never surfaces as a traceback from inside a library.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}

DATABASE_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql"}
REDIS_SCHEMES = {"redis", "rediss"}


def read_string(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def read_choice(name: str, default: str, choices: list[str]) -> str:
    value = read_string(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not valid: use one of {', '.join(choices)}.")
    return value


def read_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default

    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a valid boolean: use 1/true/yes/on or 0/false/no/off."
    )


def read_int(name: str, default: int, minimum: int | None = None, choices: dict[int, str] | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default

    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a whole number: set it to an integer such as {default}."
        ) from None
    _check_minimum(name, value, minimum)
    if choices is not None and value not in choices:
        listed = ", ".join(f"{number} ({label})" for number, label in choices.items())
        raise ImproperlyConfigured(f"{name}={value} is not valid: use one of {listed}.")
    return value


def read_float(name: str, default: float, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default

    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a number: set it to a number such as {default}."
        ) from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name}={raw!r} must be a finite number.")
    _check_minimum(name, value, minimum)
    return value


def read_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def read_database_url(name: str, default_sqlite_path: Path) -> dict[str, Any]:
    """Return a Django DATABASES entry from the URL in `name`.

    Unset means a SQLite file at `default_sqlite_path`. SQLite runs in WAL mode
    with a busy timeout and immediate transactions, because several worker
    processes write to the same file.
    """
    raw = read_string(name)
    if not raw:
        return sqlite_database(default_sqlite_path)

    scheme = urlsplit(raw).scheme
    if scheme not in DATABASE_SCHEMES:
        raise ImproperlyConfigured(
            f"{name}={mask_url_password(raw)!r} has the unsupported scheme {scheme!r}: "
            "use postgres://USER:PASSWORD@HOST:PORT/NAME, sqlite:///ABSOLUTE/PATH, "
            "or unset it to use a SQLite file under var/."
        )
    try:
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}={mask_url_password(raw)!r} is invalid: {error}.") from None

    if config["ENGINE"] == "django.db.backends.sqlite3":
        if not config.get("NAME") or config["NAME"] == ":memory:":
            raise ImproperlyConfigured(
                f"{name}={raw!r} names no database file: use sqlite:////absolute/path/dealsite.sqlite3."
            )
        return sqlite_database(Path(config["NAME"]))
    if not config.get("NAME"):
        raise ImproperlyConfigured(
            f"{name}={mask_url_password(raw)!r} names no database: add it after the host, "
            "as in postgres://postgres@127.0.0.1:5432/dealsite."
        )
    return config


def sqlite_database(path: Path) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # Seconds a writer waits for another process's lock before failing.
            "timeout": 30,
            # BEGIN IMMEDIATE takes the write lock up front, so two writers wait
            # for each other instead of failing on a lock upgrade.
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        "TEST": {"NAME": str(path.with_name(path.stem + "-test" + path.suffix))},
    }


def read_redis_url(name: str) -> str:
    """Return the Redis URL in `name` after checking its shape, or "" when unset."""
    raw = read_string(name)
    if not raw:
        return ""

    parts = urlsplit(raw)
    if parts.scheme not in REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"{name}={mask_url_password(raw)!r} has the unsupported scheme {parts.scheme!r}: "
            "use redis://HOST:PORT/DB (or rediss:// for TLS), or unset it to use the embedded Redis."
        )
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={mask_url_password(raw)!r} has an invalid port: use a number such as 6379."
        ) from None
    if not parts.hostname:
        raise ImproperlyConfigured(
            f"{name}={mask_url_password(raw)!r} names no host: use redis://127.0.0.1:{port or 6379}/0."
        )

    db_path = parts.path.strip("/")
    if db_path and not (db_path.isdigit() and int(db_path) < 16):
        raise ImproperlyConfigured(
            f"{name}={mask_url_password(raw)!r} has an invalid database number {db_path!r}: "
            "use a number from 0 to 15 after the port, as in redis://127.0.0.1:6379/3."
        )
    return raw


def redis_db_number(url: str) -> int:
    db_path = urlsplit(url).path.strip("/")
    return int(db_path) if db_path else 0


def mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _check_minimum(name: str, value: float, minimum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} is too small: use {minimum} or more.")
