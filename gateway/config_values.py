"""Readers and validators for single configuration values.

Each reads one environment variable or TOML key, checks it and raises
:class:`ConfigError` naming the key when it is wrong; :mod:`gateway.config`
and :mod:`gateway.config_sources` build the settings from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from .errors import ConfigError

RATE_LIMIT_PATTERN = re.compile(
    r"^\s*\d+\s*(/|per)\s*(\d+\s*)?"
    r"(second|seconds|minute|minutes|hour|hours|day|days|month|months|year|years)"
    r"\s*$",
    re.IGNORECASE,
)


def check_rate_limit(value: str, where: str) -> None:
    """Refuse a rate limit flask-limiter could not read, naming ``where``."""
    parts = [part for part in re.split(r"[;,]", value) if part.strip()]
    if not parts or not all(RATE_LIMIT_PATTERN.match(part) for part in parts):
        raise ConfigError(
            f"{where} must look like '100 per 15 minutes' or '10/second',"
            f" not {value!r}."
        )


def env_text(environ: Mapping[str, Any], name: str, default: str) -> str:
    """The stripped text of variable ``name``, or ``default`` when unset."""
    value = environ.get(name)
    return default if value is None else str(value).strip()


def split_list(value: str) -> list[str]:
    """The non-empty, stripped parts of a comma-separated list."""
    return [part.strip() for part in value.split(",") if part.strip()]


def env_integer(
    environ: Mapping[str, Any], name: str, default: int, *, low: int, high: int
) -> int:
    """Variable ``name`` as a whole number between ``low`` and ``high``."""
    text = env_text(environ, name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}.")
    return value


def env_number(environ: Mapping[str, Any], name: str, default: float) -> float:
    """Variable ``name`` as a non-negative number."""
    text = env_text(environ, name, str(default))
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}.") from None
    if not 0 <= value < 10**9:
        raise ConfigError(f"{name} must be a positive number, not {text!r}.")
    return value


def env_flag(environ: Mapping[str, Any], name: str, default: bool) -> bool:
    """Variable ``name`` as a switch: 1/true/yes/on or 0/false/no/off."""
    text = env_text(environ, name, "1" if default else "0").lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {text!r}.")


def table_integer(
    where: str, table: Mapping[str, Any], key: str, default: int, low: int, high: int
) -> int:
    """``key`` of a TOML table as a whole number between ``low`` and ``high``."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be a whole number.")
    if not low <= value <= high:
        raise ConfigError(f"{where}.{key} must be between {low} and {high}.")
    return value


def parse_timestamp(where: str, value: Any) -> float | None:
    """A TOML date, date-time or ISO text as unix seconds (a date: its end, UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime.combine(value, time.max, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        try:
            return parse_timestamp(where, datetime.fromisoformat(value))
        except ValueError:
            pass
    raise ConfigError(f"{where} must be a date or date-time such as 2027-01-31.")
