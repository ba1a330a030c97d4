"""Command-line commands for refusals, saved requests, secrets and the tail.

``refusals list`` and ``refusals explain ID`` read the refusal log;
``verify-file FILE`` re-checks a saved request against the configured
secrets; ``secrets usage`` shows when each secret last matched; ``tail``
follows deliveries, handler runs and refusals as they are stored.

They read the same configuration as the gateway (environment variables
and ``GATEWAY_CONFIG``) and never print a secret or a signature: secrets
are named by their key id only.

A saved request file for ``verify-file`` is either

* HTTP-like text: an optional request line (``POST
  /api/webhooks/<source> HTTP/1.1``), ``Name: value`` header lines, one
  blank line, then the body, byte for byte to the end of the file; or
* JSON: ``{"source": ..., "received_at": ..., "headers": {...},
  "body_base64": "..."}`` (``body`` with plain text instead of
  ``body_base64`` is accepted too; ``source`` and ``received_at`` are
  optional).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .cli_support import iso_time, parse_iso_time, shorten
from .config import Settings, SourceConfig, load_settings
from .diagnosis import Diagnosis, diagnose
from .errors import ConfigError, StoreError
from .lifecycle import DAY_SECONDS, key_usage
from .refusals import Refusal, RefusalLog
from .store import Store, open_store
from .tail import Tail, follow

_sleep = time.sleep  # the tail's pause between polls; replaceable in tests
DETAIL_CHARS = 100  # of a refusal's reason in ``refusals list``
_REQUEST_LINE = re.compile(rb"^[A-Z]+ (/\S*) HTTP/\d(\.\d)?$")
_SOURCE_PATH = re.compile(r"/api/webhooks/([^/?#]+)")
_ADVICE = {
    "missing_signature": (
        "The delivery lacked a header the source's scheme needs. Check that the "
        "sender signs its webhooks (a secret is set on its side) and that no "
        "proxy strips the header."
    ),
    "invalid_signature": (
        "A signature header was malformed or matched none of the configured "
        "secrets. The reason says which; a secret mismatch after a rotation "
        "usually means one side still has the old secret."
    ),
    "timestamp_out_of_tolerance": (
        "The signed time was too far from the gateway's clock. Check both "
        "clocks (NTP); deliveries held in a queue or replayed arrive late."
    ),
    "rate_limited": (
        "The client passed its rate limit for this source. A provider's own "
        "network can bypass it with allow_networks; repeated refused "
        "signatures draw from a stricter bucket."
    ),
    "payload_too_large": "The body was over the source's max_body_bytes.",
    "invalid_payload": "The body was not a JSON object naming an event type.",
    "unsupported_media_type": "The content type is not one the source takes.",
    "unavailable": (
        "The gateway could not take the delivery then (store down or "
        "backpressure); the sender was told to retry later."
    ),
    "unknown_source": "The URL names no configured source.",
    "method_not_allowed": "The request was not a POST.",
}


def register(group: click.Group) -> None:
    """Add this module's commands to the gateway's command group."""
    for command in (refusals, verify_file, secrets, tail):
        group.add_command(command)


# -- refusals --------------------------------------------------------------


@click.group()
def refusals() -> None:
    """List and explain refused deliveries."""


@refusals.command("list")
@click.option("--source", help="Only this source.")
@click.option("--code", help="Only this refusal code, e.g. invalid_signature.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_refusals(
    source: str | None, code: str | None, limit: int, as_json: bool
) -> None:
    """Show the newest refused deliveries, newest first."""
    with _opened() as (_, store):
        found = _refusal_log(store).list(source=source, code=code, limit=limit)
    if as_json:
        for item in found:
            click.echo(json.dumps(_refusal_fields(item)))
        return
    if not found:
        click.echo("No refused deliveries recorded.")
        return
    for item in found:
        reason = shorten(item.detail, DETAIL_CHARS)
        click.echo(
            f"{item.id:>6}  {iso_time(item.at)}  {item.source:<16} {item.status} "
            f"{item.code:<27} {item.client_ip or '-':<15} {reason}"
        )


@refusals.command("explain")
@click.argument("refusal_id", type=int)
@click.option(
    "--file",
    "request_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A saved copy of the request, to compare and re-check.",
)
def explain(refusal_id: int, request_file: Path | None) -> None:
    """Explain one refused delivery: the reason, the cause, what to do."""
    with _opened() as (settings, store):
        item = _refusal_log(store).get(refusal_id)
    if item is None:
        raise click.ClickException(f"No refusal with id {refusal_id}.")
    for name, value in _refusal_fields(item).items():
        if name != "id" and value is not None:
            click.echo(f"{name + ':':<14}{value}")
    click.echo("")
    click.echo(_ADVICE.get(item.code, "The gateway refused the delivery."))
    if item.body_sha256:
        click.echo(
            "The sender can compare the body SHA-256 above with the SHA-256 of "
            "the body it signed: if they differ, the body changed on the way."
        )
    if request_file is None:
        return
    saved = _read_request_file(request_file)
    click.echo("")
    digest = hashlib.sha256(saved.body).hexdigest()
    if item.body_sha256 and digest != item.body_sha256:
        click.echo(
            f"The saved body (sha256 {digest}) is not the refused body: "
            "the result below is about the saved copy."
        )
    source = _source(settings, saved.source or item.source)
    _print_diagnosis(source, saved, at=item.at)


# -- verify-file --------------------------------------------------------------


@click.command("verify-file")
@click.argument(
    "request_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--source", help="The source to check against (else from the file).")
@click.option(
    "--at",
    "at_text",
    help="Judge timestamps and expiry at this time (unix seconds or ISO 8601); "
    "default: the file's received_at, else now.",
)
def verify_file(request_file: Path, source: str | None, at_text: str | None) -> None:
    """Re-check a saved request against the configured secrets.

    Says which check fails: headers, timestamp or secret, and the likely
    cause. Exits 0 when the request would be accepted, 1 when refused.
    Secrets are named by key id only.
    """
    saved = _read_request_file(request_file)
    settings = _settings()
    chosen = _source(settings, source or saved.source)
    try:
        at = _parse_time(at_text) if at_text else (saved.received_at or time.time())
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--at") from None
    diagnosis = _print_diagnosis(chosen, saved, at=at)
    if not diagnosis.accepted:
        raise SystemExit(1)


# -- secrets ------------------------------------------------------------------


@click.group()
def secrets() -> None:
    """Show how the configured secrets are used."""


@secrets.command("usage")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def secrets_usage(as_json: bool) -> None:
    """Per source and key id: deliveries that matched it and the last time.

    Counted from stored events (all workers sharing the store, back to
    the retention horizon). A secret with no recent match can be retired.
    """
    with _opened() as (settings, store):
        usage = key_usage(store, settings)
    now = time.time()
    for item in usage:
        status = _key_status(item.not_after, item.configured, now)
        last = iso_time(item.last_matched_at) if item.last_matched_at else "never"
        if as_json:
            entry = {
                "source": item.source,
                "key_id": item.key_id,
                "deliveries": item.deliveries,
                "last_matched_at": last if item.last_matched_at else None,
                "status": status,
            }
            click.echo(json.dumps(entry))
        else:
            click.echo(
                f"{item.source:<16} {item.key_id:<12} {item.deliveries:>8} "
                f"deliveries  last matched {last:<25} {status}"
            )


# -- tail -----------------------------------------------------------------------


@click.command("tail")
@click.option(
    "--interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds between polls of the store.",
)
@click.option(
    "--heartbeat",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.05, 3600),
    help="Seconds between heartbeat lines.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(0, None),
    help="Stop after this many seconds (default: until Ctrl-C).",
)
def tail(interval: float, heartbeat: float, max_seconds: float | None) -> None:
    """Follow deliveries, handler outcomes and refusals as they are stored."""
    with _opened() as (settings, store):
        follower = Tail(store)
        follower.start()
        click.echo(f"Following the {store.kind} store (Ctrl-C to stop)", err=True)
        try:
            follow(
                follower,
                click.echo,
                sleep=_sleep,
                clock=time.time,
                interval_seconds=interval,
                heartbeat_seconds=heartbeat,
                max_seconds=max_seconds,
            )
        except KeyboardInterrupt:
            click.echo("stopped", err=True)


# -- helpers ----------------------------------------------------------------------


@dataclass(frozen=True)
class SavedRequest:
    """A request read from a file: lower-case headers and the raw body."""

    headers: dict[str, str]
    body: bytes
    source: str | None = None
    received_at: float | None = None


def parse_request_file(data: bytes) -> SavedRequest:
    """Parse a saved request in either documented format.

    :raises ValueError: the file is in neither format; the message says
        what is wrong.
    """
    if data.lstrip().startswith(b"{"):
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if isinstance(document, dict) and "headers" in document:
            return _request_from_json(document)
    return _request_from_text(data)


def _request_from_json(document: dict[str, Any]) -> SavedRequest:
    raw_headers = document["headers"]
    if isinstance(raw_headers, dict):
        pairs = list(raw_headers.items())
    elif isinstance(raw_headers, list):
        pairs = [tuple(pair) for pair in raw_headers if len(pair) == 2]
    else:
        raise ValueError('"headers" must be an object or a list of [name, value].')
    headers = {str(name).lower(): str(value) for name, value in pairs}
    if "body_base64" in document:
        try:
            body = base64.b64decode(str(document["body_base64"]), validate=True)
        except binascii.Error as err:
            raise ValueError(f'"body_base64" is not valid base64: {err}.') from None
    elif "body" in document:
        body = str(document["body"]).encode("utf-8")
    else:
        raise ValueError('the file needs "body_base64" (or "body").')
    received = document.get("received_at")
    return SavedRequest(
        headers,
        body,
        source=document.get("source"),
        received_at=None if received is None else _parse_time(str(received)),
    )


def _request_from_text(data: bytes) -> SavedRequest:
    ends = [(data.find(mark), mark) for mark in (b"\r\n\r\n", b"\n\n")]
    found = [(index, mark) for index, mark in ends if index >= 0]
    if not found:
        raise ValueError("no blank line separates the headers from the body.")
    index, mark = min(found)
    head, body = data[:index], data[index + len(mark) :]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    source = None
    request_line = _REQUEST_LINE.match(lines[0])
    if request_line:
        lines = lines[1:]
        path = _SOURCE_PATH.search(request_line.group(1).decode("latin-1"))
        source = path.group(1) if path else None
    headers: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name.strip():
            raise ValueError(f"header line {number} is not 'Name: value'.")
        headers[name.strip().lower()] = value.strip()
    return SavedRequest(headers, body, source=source)


def _read_request_file(path: Path) -> SavedRequest:
    try:
        return parse_request_file(path.read_bytes())
    except (OSError, ValueError) as err:
        raise click.ClickException(f"{path}: {err}") from None


def _print_diagnosis(
    source: SourceConfig, saved: SavedRequest, *, at: float
) -> Diagnosis:
    key_ids = ", ".join(repr(key.key_id) for key in source.keys)
    click.echo(
        f"source: {source.name} (scheme {source.scheme_name}; secrets {key_ids})"
    )
    click.echo(
        f"body: {len(saved.body)} bytes, "
        f"sha256 {hashlib.sha256(saved.body).hexdigest()}"
    )
    click.echo(f"checked at: {iso_time(at)}")
    diagnosis = diagnose(source, saved.body, saved.headers, now=at)
    for check in diagnosis.checks:
        mark = "ok  " if check.passed else "FAIL"
        click.echo(f"  [{mark}] {check.name}: {check.text}")
    for hint in diagnosis.hints:
        click.echo(f"  hint: {hint}")
    click.echo("result: " + ("accepted" if diagnosis.accepted else "refused"))
    return diagnosis


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


@contextmanager
def _opened() -> Iterator[tuple[Settings, Store]]:
    settings = _settings()
    try:
        store = open_store(settings.database_url)
    except (ConfigError, StoreError) as err:
        raise click.ClickException(str(err)) from None
    try:
        yield settings, store
    except StoreError as err:
        raise click.ClickException(f"the event store failed: {err}") from None
    finally:
        store.close()


def _refusal_log(store: Store) -> RefusalLog:
    log = RefusalLog(store)
    log.migrate()
    return log


def _source(settings: Settings, name: str | None) -> SourceConfig:
    if not name:
        raise click.ClickException(
            "Name the source with --source (the file does not say which)."
        )
    found = settings.sources.get(name)
    if found is None:
        known = ", ".join(sorted(settings.sources))
        raise click.ClickException(f"No source {name!r} is configured ({known}).")
    return found


def _refusal_fields(item: Refusal) -> dict[str, Any]:
    return {
        "id": item.id,
        "time": iso_time(item.at),
        "source": item.source,
        "status": item.status,
        "code": item.code,
        "reason": item.detail,
        "client_ip": item.client_ip,
        "request_id": item.request_id,
        "body_bytes": item.body_bytes,
        "body_sha256": item.body_sha256,
        "scheme": item.scheme,
        "content_type": item.content_type,
        "user_agent": item.user_agent,
        "headers": item.header_names,
    }


def _key_status(not_after: float | None, configured: bool, now: float) -> str:
    if not configured:
        return "no longer configured"
    if not_after is None:
        return "active, no expiry"
    when = iso_time(not_after)
    if not_after < now:
        return f"expired {when}"
    days = (not_after - now) / DAY_SECONDS
    return f"active until {when} ({days:.0f} days)"


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_iso_time(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither unix seconds nor an ISO 8601 time."
        ) from None
