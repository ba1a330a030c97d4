"""Configuration from environment variables and an optional TOML file.

Everything is read and validated once, at start-up, into frozen
dataclasses; a bad value raises :class:`ConfigError` naming the source and
the key, so the gateway never starts half-configured (CONTRACT.md
section 4).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets as secrets_module
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import ConfigError
from .schemes import Scheme, SigningKey, get_scheme

DEFAULT_SOURCE = "integration"
DEFAULT_RATE_LIMIT = "100 per 15 minutes"
# Deliveries refused for their signature also draw from this stricter bucket.
DEFAULT_UNVERIFIED_LIMIT = "20 per minute"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_DATA_DIR = "var"
# The console's credentials guard replays of every event, so a guessable
# one is refused at start-up (issue 9).
MIN_CONSOLE_TOKEN_CHARS = 16
MIN_CONSOLE_PASSWORD_CHARS = 12
# A source's allow-list is read once and checked per request; a cap keeps
# that check cheap.
MAX_ALLOW_NETWORKS = 256
ENVIRONMENTS = ("development", "production")
SOURCE_KEYS = frozenset(
    {
        "scheme",
        "secrets",
        "header",
        "tolerance_seconds",
        "max_body_bytes",
        "rate_limit",
        "allow_networks",
    }
)
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_RATE_LIMIT = re.compile(
    r"^\s*\d+\s*(/|per)\s*(\d+\s*)?"
    r"(second|seconds|minute|minutes|hour|hours|day|days|month|months|year|years)"
    r"\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SourceConfig:
    """One configured webhook source: its scheme, keys and limits."""

    name: str
    scheme: Scheme = field(repr=False, compare=False)
    keys: tuple[SigningKey, ...] = field(repr=False)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate_limit: str = DEFAULT_RATE_LIMIT
    header: str | None = None
    generated_secret: bool = False
    secret_texts: tuple[str, ...] = field(default=(), repr=False, compare=False)
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def scheme_name(self) -> str:
        """The name of the source's signature scheme."""
        return self.scheme.name


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
    env = _text(environ, "GATEWAY_ENV", "development").lower()
    if env not in ENVIRONMENTS:
        raise ConfigError(
            f"GATEWAY_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}."
        )
    data_dir = _text(environ, "GATEWAY_DATA_DIR", DEFAULT_DATA_DIR)
    rate_default = _text(environ, "RATELIMIT_DEFAULT", DEFAULT_RATE_LIMIT)
    _check_rate_limit(rate_default, "RATELIMIT_DEFAULT")
    unverified_limit = _text(environ, "RATELIMIT_UNVERIFIED", DEFAULT_UNVERIFIED_LIMIT)
    _check_rate_limit(unverified_limit, "RATELIMIT_UNVERIFIED")
    config_path = _text(environ, "GATEWAY_CONFIG", "")
    if config_path:
        tables = _read_toml(config_path)
    else:
        tables = {
            DEFAULT_SOURCE: {
                "scheme": "hmac-sha256",
                "secrets": _split(_text(environ, "INTEGRATION_SECRET_KEY", "")),
            }
        }
    sources = {
        name: _build_source(
            name, table, environ, env=env, data_dir=data_dir, rate_default=rate_default
        )
        for name, table in tables.items()
    }
    database_url = _text(
        environ, "GATEWAY_DATABASE_URL", f"sqlite:///{data_dir}/gateway.db"
    )
    if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(
            "GATEWAY_DATABASE_URL must start with sqlite:/// or postgresql://."
        )
    storage_uri = _text(environ, "RATELIMIT_STORAGE_URI", "memory://")
    if not storage_uri.startswith(("memory://", "redis://", "rediss://")):
        raise ConfigError("RATELIMIT_STORAGE_URI must be memory:// or redis://...")
    log_format = _text(environ, "GATEWAY_LOG_FORMAT", "json").lower()
    readyz_provider = _flag(environ, "GATEWAY_READYZ_PROVIDER", False)
    if readyz_provider and not _text(environ, "INTEGRATION_API_URL", ""):
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
        trusted_proxies=_integer(environ, "GATEWAY_TRUSTED_PROXIES", 0, low=0, high=10),
        handler_modules=tuple(_split(_text(environ, "GATEWAY_HANDLERS", ""))),
        api_key=_text(environ, "INTEGRATION_API_KEY", "") or None,
        api_url=_text(environ, "INTEGRATION_API_URL", "") or None,
        webhook_url=_text(environ, "INTEGRATION_WEBHOOK_URL", "") or None,
        max_retries=_integer(environ, "GATEWAY_MAX_RETRIES", 3, low=0, high=20),
        retry_base_seconds=_number(environ, "GATEWAY_RETRY_BASE_SECONDS", 2.0),
        lease_seconds=_number(environ, "GATEWAY_LEASE_SECONDS", 60.0),
        poll_interval_seconds=_number(environ, "GATEWAY_POLL_SECONDS", 1.0),
        retention_days=_number(environ, "GATEWAY_RETENTION_DAYS", 30.0),
        db_pool_size=_integer(environ, "GATEWAY_DB_POOL_SIZE", 5, low=1, high=100),
        refusal_retention_days=_number(environ, "GATEWAY_REFUSAL_RETENTION_DAYS", 7.0),
        dispatcher_enabled=_flag(environ, "GATEWAY_DISPATCHER", True),
        handler_time_budget_seconds=_number(
            environ, "GATEWAY_HANDLER_BUDGET_SECONDS", 10.0
        ),
        backlog_high_water=_integer(
            environ, "GATEWAY_BACKLOG_HIGH_WATER", 0, low=0, high=10**9
        ),
        backlog_max_age_seconds=_number(environ, "GATEWAY_BACKLOG_MAX_AGE_SECONDS", 0),
        breaker_failures=_integer(
            environ, "GATEWAY_BREAKER_FAILURES", 5, low=0, high=10_000
        ),
        breaker_cooldown_seconds=_number(
            environ, "GATEWAY_BREAKER_COOLDOWN_SECONDS", 30.0
        ),
        secret_expiry_warning_days=_number(
            environ, "GATEWAY_SECRET_EXPIRY_WARNING_DAYS", 7.0
        ),
        refusal_max_rows=_integer(
            environ, "GATEWAY_REFUSAL_MAX_ROWS", 10_000, low=1, high=10**8
        ),
        metrics_token=_text(environ, "GATEWAY_METRICS_TOKEN", "") or None,
        readyz_provider=readyz_provider,
        log_format=log_format,
        log_level=_text(environ, "GATEWAY_LOG_LEVEL", "INFO").upper(),
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
    enabled = _flag(environ, "GATEWAY_CONSOLE", False)
    token = _text(environ, "GATEWAY_CONSOLE_TOKEN", "") or None
    user = _text(environ, "GATEWAY_CONSOLE_USER", "") or None
    password = _text(environ, "GATEWAY_CONSOLE_PASSWORD", "") or None
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


def _build_source(
    name: str,
    table: Any,
    environ: Mapping[str, Any],
    *,
    env: str,
    data_dir: str,
    rate_default: str,
) -> SourceConfig:
    where = f"[sources.{name}]"
    if not _SOURCE_NAME.match(name):
        raise ConfigError(
            f"{where}: a source name must be lower-case letters, digits, '-' or '_'."
        )
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table.")
    unknown = set(table) - SOURCE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}.")
    header = table.get("header")
    if header is not None and (not isinstance(header, str) or not header.strip()):
        raise ConfigError(f"{where}.header must be a non-empty string.")
    try:
        scheme = get_scheme(str(table.get("scheme", "hmac-sha256")), header)
    except ConfigError as err:
        raise ConfigError(f"{where}.scheme: {err}") from err
    raw_secrets = table.get("secrets", [])
    if isinstance(raw_secrets, str):
        raw_secrets = _split(raw_secrets)
    if not isinstance(raw_secrets, list):
        raise ConfigError(f"{where}.secrets must be a list.")
    generated = False
    entries = [
        _secret_entry(where, index, item, environ, production=env == "production")
        for index, item in enumerate(raw_secrets)
    ]
    entries = [entry for entry in entries if entry[1]]
    if not entries:
        if env == "production":
            raise ConfigError(
                f"{where}.secrets: no secret is configured; set it "
                f"(for the default source, INTEGRATION_SECRET_KEY)."
            )
        entries = [("#0", _development_secret(name, scheme.name, data_dir), None)]
        generated = True
    keys = []
    for key_id, text, not_after in entries:
        try:
            keys.append(scheme.load_key(text, key_id, not_after))
        except ConfigError as err:
            raise ConfigError(f"{where}.secrets[{key_id}]: {err}") from err
    tolerance = _table_integer(
        where, table, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS, 1, 86_400
    )
    max_body = _table_integer(
        where, table, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, 1, 1024**3
    )
    rate_limit = table.get("rate_limit", rate_default)
    if not isinstance(rate_limit, str):
        raise ConfigError(f"{where}.rate_limit must be a string like '100/minute'.")
    _check_rate_limit(rate_limit, f"{where}.rate_limit")
    allow_networks = _networks(where, table.get("allow_networks", []))
    return SourceConfig(
        name=name,
        scheme=scheme,
        keys=tuple(keys),
        tolerance_seconds=tolerance,
        max_body_bytes=max_body,
        rate_limit=rate_limit,
        header=header,
        generated_secret=generated,
        secret_texts=tuple(text for _, text, _ in entries),
        allow_networks=allow_networks,
    )


def _networks(
    where: str, value: Any
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Validate a source's ``allow_networks`` list of CIDR blocks."""
    key = f"{where}.allow_networks"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{key} must be a list of CIDR strings like "192.0.2.0/24".')
    if len(value) > MAX_ALLOW_NETWORKS:
        raise ConfigError(f"{key} lists more than {MAX_ALLOW_NETWORKS} networks.")
    networks = []
    for text in value:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError as err:
            # strict=True refuses host bits (192.0.2.7/24), most often a typo
            # that would silently allow a wider or other network than meant.
            raise ConfigError(f"{key}: {text!r} is not a network: {err}.") from None
    return tuple(networks)


def _secret_entry(
    where: str,
    index: int,
    item: Any,
    environ: Mapping[str, Any],
    *,
    production: bool,
) -> tuple[str, str, float | None]:
    """Normalise one configured secret to (key id, text, not_after)."""
    key_id = f"#{index}"
    not_after: float | None = None
    if isinstance(item, dict):
        extra = set(item) - {"secret", "key_id", "not_after"}
        if extra:
            raise ConfigError(
                f"{where}.secrets[{index}]: unknown key {sorted(extra)[0]!r}."
            )
        key_id = str(item.get("key_id") or key_id)
        not_after = _timestamp(
            f"{where}.secrets[{index}].not_after", item.get("not_after")
        )
        item = item.get("secret", "")
    if not isinstance(item, str):
        raise ConfigError(f"{where}.secrets[{index}] must be a string.")
    text = item.strip()
    if text.startswith("env:"):
        variable = text[4:]
        text = str(environ.get(variable, "")).strip()
        # In development an unset variable counts as no secret, so the
        # source gets a generated one; production refuses to start.
        if not text and production:
            raise ConfigError(
                f"{where}.secrets[{index}] names the variable {variable},"
                " which is empty."
            )
    return key_id, text, not_after


def _timestamp(where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime.combine(value, time.max, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        try:
            return _timestamp(where, datetime.fromisoformat(value))
        except ValueError:
            pass
    raise ConfigError(f"{where} must be a date or date-time such as 2027-01-31.")


def _development_secret(source: str, scheme: str, data_dir: str) -> str:
    """Return this source's development secret, creating it on first use.

    The secret is kept in a file so that every worker process and every
    restart shares it; it is shown once, by the caller, when created.
    """
    path = Path(data_dir) / f"dev-secret-{source}"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ConfigError(
            f"cannot read the development secret file {path}: {err}"
        ) from err
    secret = secrets_module.token_hex(32)
    if scheme == "standard":
        import base64

        secret = "whsec_" + base64.b64encode(secrets_module.token_bytes(32)).decode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    except OSError as err:
        raise ConfigError(
            f"cannot write the development secret file {path}: {err}"
        ) from err
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    _NEWLY_GENERATED.append((source, secret, str(path)))
    return secret


_NEWLY_GENERATED: list[tuple[str, str, str]] = []


def take_generated_secrets() -> list[tuple[str, str, str]]:
    """Return and forget the development secrets created by this process.

    Each entry is (source, secret, file path); the caller shows them once.
    """
    taken = list(_NEWLY_GENERATED)
    _NEWLY_GENERATED.clear()
    return taken


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as err:
        raise ConfigError(
            f"GATEWAY_CONFIG: cannot read {path}: {err.strerror}."
        ) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"GATEWAY_CONFIG: {path} is not valid TOML: {err}.") from err
    unknown = set(document) - {"sources"}
    if unknown:
        raise ConfigError(f"GATEWAY_CONFIG: unknown table {sorted(unknown)[0]!r}.")
    sources = document.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise ConfigError(f"GATEWAY_CONFIG: {path} defines no [sources.<name>] table.")
    return sources


def _check_rate_limit(value: str, where: str) -> None:
    parts = [part for part in re.split(r"[;,]", value) if part.strip()]
    if not parts or not all(_RATE_LIMIT.match(part) for part in parts):
        raise ConfigError(
            f"{where} must look like '100 per 15 minutes' or '10/second',"
            f" not {value!r}."
        )


def _text(environ: Mapping[str, Any], name: str, default: str) -> str:
    value = environ.get(name)
    return default if value is None else str(value).strip()


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _integer(
    environ: Mapping[str, Any], name: str, default: int, *, low: int, high: int
) -> int:
    text = _text(environ, name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}.")
    return value


def _number(environ: Mapping[str, Any], name: str, default: float) -> float:
    text = _text(environ, name, str(default))
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}.") from None
    if not 0 <= value < 10**9:
        raise ConfigError(f"{name} must be a positive number, not {text!r}.")
    return value


def _flag(environ: Mapping[str, Any], name: str, default: bool) -> bool:
    text = _text(environ, name, "1" if default else "0").lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {text!r}.")


def _table_integer(
    where: str, table: Mapping[str, Any], key: str, default: int, low: int, high: int
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be a whole number.")
    if not low <= value <= high:
        raise ConfigError(f"{where}.{key} must be between {low} and {high}.")
    return value
