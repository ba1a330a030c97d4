"""``gateway config check``: validate the configuration, secrets masked.

A secret is reduced to facts (set, key id, length, expiry); no character
of it is ever shown, nor a database or Redis password.
"""

from __future__ import annotations

from typing import Any

import click

from .cli_send import webhook_url
from .cli_support import (
    CliState,
    current_state,
    format_time,
    indent,
    json_option,
    masked_url,
    render_table,
)
from .errors import ConfigError, StoreError
from .signals import load_handlers


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.option("--connect", is_flag=True, help="Also check that the store answers.")
@json_option
def config_check(connect: bool, as_json: bool) -> None:
    """Validate the configuration and show it, secrets masked.

    A secret is shown only as set, with its key id and length; never any
    character of it. Exits 3 on a bad configuration or a handler module
    that cannot be imported, 4 with --connect when the store is down.
    """
    state = current_state()
    try:
        settings = state.settings
        loaded = load_handlers(settings.handler_modules)
    except ConfigError as err:
        if as_json:
            state.emit_json({"ok": False, "error": str(err)})
        raise
    report = _config_report(state, loaded)
    if connect:
        try:
            state.store.ping()
        except StoreError:
            report["store"] = "unreachable"
            if as_json:
                state.emit_json({**report, "ok": False})
            raise
        report["store"] = "ok"
    if as_json:
        state.emit_json(report)
        return
    state.echo(f"Configuration is valid (environment: {settings.env}).")
    state.echo("\nSources")
    state.echo(
        indent(
            render_table(
                ("source", "scheme", "secrets", "tolerance", "max body", "rate limit"),
                (
                    (
                        item["name"],
                        item["scheme"],
                        len(item["secrets"]),
                        f"{item['tolerance_seconds']} s",
                        f"{item['max_body_bytes']} B",
                        item["rate_limit"],
                    )
                    for item in report["sources"]
                ),
            )
        )
    )
    state.echo("\nSecrets (values never shown)")
    state.echo(
        indent(
            render_table(
                ("source", "key id", "length", "valid until", "note"),
                (
                    (
                        item["name"],
                        secret["key_id"],
                        secret["length"],
                        secret["not_after"] or "",
                        secret["note"],
                    )
                    for item in report["sources"]
                    for secret in item["secrets"]
                ),
            )
        )
    )
    state.echo("\nSettings")
    for label, value in report["settings"].items():
        state.echo(f"  {label.replace('_', ' '):<24} {value}")
    if "store" in report:
        state.echo(f"  {'store':<24} {report['store']}")
    for warning in report["warnings"]:
        state.echo(f"Warning: {warning}", err=True)


def _config_report(state: CliState, loaded: list[str]) -> dict[str, Any]:
    """Describe the configuration with every secret reduced to a fact."""
    settings = state.settings
    sources = []
    for source in settings.sources.values():
        secrets = []
        for key, text in zip(source.keys, source.secret_texts, strict=False):
            note = "public key" if key.kind != "hmac" else ""
            if source.generated_secret:
                note = f"generated for development, kept in {settings.data_dir}"
            secrets.append(
                {
                    "key_id": key.key_id,
                    "length": len(text),
                    "not_after": format_time(key.not_after) or None,
                    "note": note,
                }
            )
        sources.append(
            {
                "name": source.name,
                "scheme": source.scheme_name,
                "header": source.header,
                "secrets": secrets,
                "tolerance_seconds": source.tolerance_seconds,
                "max_body_bytes": source.max_body_bytes,
                "rate_limit": source.rate_limit,
                "url": (
                    webhook_url(settings.webhook_url, source.name)
                    if settings.webhook_url
                    else None
                ),
            }
        )
    warnings = []
    if not settings.is_production:
        warnings.append("development mode: GATEWAY_ENV=production is stricter.")
    if any(source.generated_secret for source in settings.sources.values()):
        warnings.append("a source uses a generated development secret.")
    return {
        "ok": True,
        "env": settings.env,
        "sources": sources,
        "settings": {
            "database": masked_url(settings.database_url),
            "rate_limit_storage": masked_url(settings.ratelimit_storage_uri),
            "rate_limit_default": settings.ratelimit_default,
            "trusted_proxies": settings.trusted_proxies,
            "handler_modules": ", ".join(loaded) or "(none)",
            "max_retries": settings.max_retries,
            "retention_days": settings.retention_days,
            "api_key": _presence(settings.api_key),
            "api_url": masked_url(settings.api_url) if settings.api_url else "not set",
            "webhook_url": (
                masked_url(settings.webhook_url) if settings.webhook_url else "not set"
            ),
            "metrics_token": _presence(settings.metrics_token),
        },
        "warnings": warnings,
    }


def _presence(secret: str | None) -> str:
    return f"set ({len(secret)} characters)" if secret else "not set"
