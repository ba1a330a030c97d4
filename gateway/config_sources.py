"""Webhook sources: their TOML tables, secrets and development secrets.

:func:`build_source` validates one ``[sources.<name>]`` table (or the
default source built from ``INTEGRATION_SECRET_KEY``) into a frozen
:class:`SourceConfig`; secrets may name an environment variable. Outside
production a source without a secret gets a development secret, kept in
a file under the data directory so every worker shares it.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets as secrets_module
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_values import (
    check_rate_limit,
    parse_timestamp,
    split_list,
    table_integer,
)
from .errors import ConfigError
from .schemes import Scheme, SigningKey, get_scheme

DEFAULT_RATE_LIMIT = "100 per 15 minutes"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_TOLERANCE_SECONDS = 300
# A source's allow-list is read once and checked per request; a cap keeps
# that check cheap.
MAX_ALLOW_NETWORKS = 256
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


def read_toml(path: str) -> dict[str, Any]:
    """The ``[sources.<name>]`` tables of the TOML file at ``path``."""
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


def build_source(
    name: str,
    table: Any,
    environ: Mapping[str, Any],
    *,
    env: str,
    data_dir: str,
    rate_default: str,
) -> SourceConfig:
    """Validate one source's table into a :class:`SourceConfig`."""
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
        raw_secrets = split_list(raw_secrets)
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
    tolerance = table_integer(
        where, table, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS, 1, 86_400
    )
    max_body = table_integer(
        where, table, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, 1, 1024**3
    )
    rate_limit = table.get("rate_limit", rate_default)
    if not isinstance(rate_limit, str):
        raise ConfigError(f"{where}.rate_limit must be a string like '100/minute'.")
    check_rate_limit(rate_limit, f"{where}.rate_limit")
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
        not_after = parse_timestamp(
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


def _development_secret(source: str, scheme: str, data_dir: str) -> str:
    """Return this source's development secret, creating it on first use.

    It is shown once, by the caller, when created.
    """

    def make() -> str:
        if scheme == "standard":
            return "whsec_" + base64.b64encode(secrets_module.token_bytes(32)).decode()
        return secrets_module.token_hex(32)

    path = Path(data_dir) / f"dev-secret-{source}"
    secret, created = secret_file(path, make)
    if created:
        _NEWLY_GENERATED.append((source, secret, str(path)))
    return secret


def secret_file(path: Path, make: Callable[[], str]) -> tuple[str, bool]:
    """Read a generated secret from ``path``, creating it with ``make`` first.

    The file (mode 0600) lets every worker process and every restart
    share one development secret; when several processes start at once,
    exactly one creates it and the others read it. Returns the secret and
    whether this call created it.

    :raises ConfigError: the file cannot be read or written.
    """
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ConfigError(
            f"cannot read the secret file {path}: {err.strerror}"
        ) from None
    secret = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    except OSError as err:
        raise ConfigError(
            f"cannot write the secret file {path}: {err.strerror}"
        ) from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    return secret, True


_NEWLY_GENERATED: list[tuple[str, str, str]] = []


def take_generated_secrets() -> list[tuple[str, str, str]]:
    """Return and forget the development secrets created by this process.

    Each entry is (source, secret, file path); the caller shows them once.
    """
    taken = list(_NEWLY_GENERATED)
    _NEWLY_GENERATED.clear()
    return taken
