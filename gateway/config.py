"""Configuration from environment variables and an optional TOML file.

Everything is read and validated once, at start-up, into frozen
dataclasses; a bad value raises :class:`ConfigError` naming the source and
the key, so the gateway never starts half-configured (CONTRACT.md
section 4). The sources' tables and secrets are read in
:mod:`gateway.config_sources`, single values in :mod:`gateway.config_values`;
their public names are importable from here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .config_sources import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TOLERANCE_SECONDS,
    MAX_ALLOW_NETWORKS,
    SOURCE_KEYS,
    SourceConfig,
    build_source,
    read_toml,
    secret_file,
    take_generated_secrets,
)
from .config_values import (
    check_rate_limit,
    env_flag,
    env_integer,
    env_number,
    env_text,
    split_list,
)
from .errors import ConfigError

__all__ = [
    "secret_file",
    "DEFAULT_DATA_DIR",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_SOURCE",
    "DEFAULT_TOLERANCE_SECONDS",
    "DEFAULT_UNVERIFIED_LIMIT",
    "ENVIRONMENTS",
    "MAX_ALLOW_NETWORKS",
    "MIN_CONSOLE_PASSWORD_CHARS",
    "MIN_CONSOLE_TOKEN_CHARS",
    "SOURCE_KEYS",
    "Settings",
    "SourceConfig",
    "load_settings",
    "secret_values",
    "take_generated_secrets",
]

DEFAULT_SOURCE = "integration"
# Deliveries refused for their signature also draw from this stricter bucket.
DEFAULT_UNVERIFIED_LIMIT = "20 per minute"
DEFAULT_DATA_DIR = "var"
# The console's credentials guard replays of every event, so a guessable
# one is refused at start-up (issue 9).
MIN_CONSOLE_TOKEN_CHARS = 16
MIN_CONSOLE_PASSWORD_CHARS = 12
ENVIRONMENTS = ("development", "production")


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration of one gateway process."""

    env: str
    sources: Mapping[str, SourceConfig]
    database_url: str
    data_dir: str
    ratelimit_storage_uri: str
    ratelimit_default: str
    config_path: str
    ratelimit_unverified: str
    trusted_proxies: int
    handler_modules: tuple[str, ...]
    api_key: str | None = field(default=None, repr=False)
    api_url: str | None = None
    webhook_url: str | None = None
    max_retries: int = 3
    retry_base_seconds: float = 2.0
    lease_seconds: float = 60.0
    poll_interval_seconds: float = 1.0
    retention_days: float = 30.0
    db_pool_size: int = 5
    refusal_retention_days: float = 7.0
    dispatcher_enabled: bool = True
    handler_time_budget_seconds: float = 10.0
    backlog_high_water: int = 0
    backlog_max_age_seconds: float = 0.0
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 30.0
    secret_expiry_warning_days: float = 7.0
    refusal_max_rows: int = 10_000
    metrics_token: str | None = field(default=None, repr=False)
    readyz_provider: bool = False
    log_format: str = "json"
    log_level: str = "INFO"
    console_enabled: bool = False
    console_token: str | None = field(default=None, repr=False)
    console_user: str | None = None
    console_password: str | None = field(default=None, repr=False)

    @property
    def is_production(self) -> bool:
        """Whether the gateway runs with production safety rules."""
        return self.env == "production"


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read the configuration from the environment, the TOML file and overrides.

    :param overrides: values that take precedence over ``os.environ``,
        keyed by the same variable names (``INTEGRATION_SECRET_KEY``...).
    :raises ConfigError: naming the source and key of the first bad value.
    """
    environ: dict[str, Any] = dict(os.environ)
    if overrides:
        environ.update(overrides)
    env = env_text(environ, "GATEWAY_ENV", "development").lower()
    if env not in ENVIRONMENTS:
        raise ConfigError(
            f"GATEWAY_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}."
        )
    data_dir = env_text(environ, "GATEWAY_DATA_DIR", DEFAULT_DATA_DIR)
    rate_default = env_text(environ, "RATELIMIT_DEFAULT", DEFAULT_RATE_LIMIT)
    check_rate_limit(rate_default, "RATELIMIT_DEFAULT")
    unverified_limit = env_text(
        environ, "RATELIMIT_UNVERIFIED", DEFAULT_UNVERIFIED_LIMIT
    )
    check_rate_limit(unverified_limit, "RATELIMIT_UNVERIFIED")
    config_path = env_text(environ, "GATEWAY_CONFIG", "")
    if config_path:
        tables = read_toml(config_path)
    else:
        tables = {
            DEFAULT_SOURCE: {
                "scheme": "hmac-sha256",
                "secrets": split_list(env_text(environ, "INTEGRATION_SECRET_KEY", "")),
            }
        }
    sources = {
        name: build_source(
            name, table, environ, env=env, data_dir=data_dir, rate_default=rate_default
        )
        for name, table in tables.items()
    }
    database_url = env_text(
        environ, "GATEWAY_DATABASE_URL", f"sqlite:///{data_dir}/gateway.db"
    )
    if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(
            "GATEWAY_DATABASE_URL must start with sqlite:/// or postgresql://."
        )
    storage_uri = env_text(environ, "RATELIMIT_STORAGE_URI", "memory://")
    if not storage_uri.startswith(("memory://", "redis://", "rediss://")):
        raise ConfigError("RATELIMIT_STORAGE_URI must be memory:// or redis://...")
    log_format = env_text(environ, "GATEWAY_LOG_FORMAT", "json").lower()
    readyz_provider = env_flag(environ, "GATEWAY_READYZ_PROVIDER", False)
    if readyz_provider and not env_text(environ, "INTEGRATION_API_URL", ""):
        raise ConfigError(
            "GATEWAY_READYZ_PROVIDER needs INTEGRATION_API_URL, the API to check."
        )
    if log_format not in ("json", "text"):
        raise ConfigError("GATEWAY_LOG_FORMAT must be json or text.")
    return Settings(
        env=env,
        sources=sources,
        database_url=database_url,
        data_dir=data_dir,
        ratelimit_storage_uri=storage_uri,
        ratelimit_default=rate_default,
        config_path=config_path,
        ratelimit_unverified=unverified_limit,
        trusted_proxies=env_integer(
            environ, "GATEWAY_TRUSTED_PROXIES", 0, low=0, high=10
        ),
        handler_modules=tuple(split_list(env_text(environ, "GATEWAY_HANDLERS", ""))),
        api_key=env_text(environ, "INTEGRATION_API_KEY", "") or None,
        api_url=env_text(environ, "INTEGRATION_API_URL", "") or None,
        webhook_url=env_text(environ, "INTEGRATION_WEBHOOK_URL", "") or None,
        max_retries=env_integer(environ, "GATEWAY_MAX_RETRIES", 3, low=0, high=20),
        retry_base_seconds=env_number(environ, "GATEWAY_RETRY_BASE_SECONDS", 2.0),
        lease_seconds=env_number(environ, "GATEWAY_LEASE_SECONDS", 60.0),
        poll_interval_seconds=env_number(environ, "GATEWAY_POLL_SECONDS", 1.0),
        retention_days=env_number(environ, "GATEWAY_RETENTION_DAYS", 30.0),
        db_pool_size=env_integer(environ, "GATEWAY_DB_POOL_SIZE", 5, low=1, high=100),
        refusal_retention_days=env_number(
            environ, "GATEWAY_REFUSAL_RETENTION_DAYS", 7.0
        ),
        dispatcher_enabled=env_flag(environ, "GATEWAY_DISPATCHER", True),
        handler_time_budget_seconds=env_number(
            environ, "GATEWAY_HANDLER_BUDGET_SECONDS", 10.0
        ),
        backlog_high_water=env_integer(
            environ, "GATEWAY_BACKLOG_HIGH_WATER", 0, low=0, high=10**9
        ),
        backlog_max_age_seconds=env_number(
            environ, "GATEWAY_BACKLOG_MAX_AGE_SECONDS", 0
        ),
        breaker_failures=env_integer(
            environ, "GATEWAY_BREAKER_FAILURES", 5, low=0, high=10_000
        ),
        breaker_cooldown_seconds=env_number(
            environ, "GATEWAY_BREAKER_COOLDOWN_SECONDS", 30.0
        ),
        secret_expiry_warning_days=env_number(
            environ, "GATEWAY_SECRET_EXPIRY_WARNING_DAYS", 7.0
        ),
        refusal_max_rows=env_integer(
            environ, "GATEWAY_REFUSAL_MAX_ROWS", 10_000, low=1, high=10**8
        ),
        metrics_token=env_text(environ, "GATEWAY_METRICS_TOKEN", "") or None,
        readyz_provider=readyz_provider,
        log_format=log_format,
        log_level=env_text(environ, "GATEWAY_LOG_LEVEL", "INFO").upper(),
        **_console_settings(environ),
    )


def secret_values(settings: Settings) -> list[str]:
    """Every secret string the configuration holds, for log redaction.

    Besides the sources' secrets, the API key and the metrics token,
    this includes passwords written into the configured URLs (database,
    rate-limit storage, provider API).
    """
    values: list[str] = []
    if settings.api_key:
        values.append(settings.api_key)
    if settings.metrics_token:
        values.append(settings.metrics_token)
    if settings.console_token:
        values.append(settings.console_token)
    if settings.console_password:
        values.append(settings.console_password)
    for source in settings.sources.values():
        values.extend(source.secret_texts)
    for url in (
        settings.database_url,
        settings.ratelimit_storage_uri,
        settings.api_url,
        settings.webhook_url,
    ):
        values.extend(_url_password(url))
    return values


def _url_password(url: str | None) -> list[str]:
    """A URL's password as written (percent-encoded) and decoded."""
    if not url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return sorted({password, unquote(password)}) if password else []


def _console_settings(environ: Mapping[str, Any]) -> dict[str, Any]:
    """Read and check the console's switch and credentials (issue 9).

    The console is off unless ``GATEWAY_CONSOLE`` is true, and then it
    needs a bearer token, a user and password for basic auth, or both:
    it is never served without credentials.
    """
    enabled = env_flag(environ, "GATEWAY_CONSOLE", False)
    token = env_text(environ, "GATEWAY_CONSOLE_TOKEN", "") or None
    user = env_text(environ, "GATEWAY_CONSOLE_USER", "") or None
    password = env_text(environ, "GATEWAY_CONSOLE_PASSWORD", "") or None
    if not enabled:
        return {"console_enabled": False}
    if (user is None) != (password is None):
        raise ConfigError(
            "GATEWAY_CONSOLE_USER and GATEWAY_CONSOLE_PASSWORD must be set together."
        )
    if token is None and password is None:
        raise ConfigError(
            "GATEWAY_CONSOLE=1 needs credentials: set GATEWAY_CONSOLE_TOKEN, or"
            " GATEWAY_CONSOLE_USER and GATEWAY_CONSOLE_PASSWORD."
        )
    if token is not None and len(token) < MIN_CONSOLE_TOKEN_CHARS:
        raise ConfigError(
            f"GATEWAY_CONSOLE_TOKEN must be at least {MIN_CONSOLE_TOKEN_CHARS}"
            " characters long."
        )
    if password is not None and len(password) < MIN_CONSOLE_PASSWORD_CHARS:
        raise ConfigError(
            f"GATEWAY_CONSOLE_PASSWORD must be at least {MIN_CONSOLE_PASSWORD_CHARS}"
            " characters long."
        )
    if user is not None and ":" in user:
        raise ConfigError("GATEWAY_CONSOLE_USER must not contain ':'.")
    return {
        "console_enabled": True,
        "console_token": token,
        "console_user": user,
        "console_password": password,
    }
