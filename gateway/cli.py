"""The ``gateway`` command-line tool: commands only, over the other modules.

Run it as ``gateway ...`` (the console script of ``pyproject.toml``), as
``python -m gateway ...``, or as ``flask --app app gateway ...``: the same
click group :data:`cli` serves all three. Other modules add commands to
it with ``cli.add_command``. Exit codes are those of
:mod:`gateway.cli_support` and the README; no command ever prints a
secret.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import click
import requests

from . import logs, replay
from .cli_support import (
    EXIT_CONFIG,
    EXIT_DELIVERY,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    EXIT_USAGE,
    MOMENT,
    STATE_KEY,
    CliFailure,
    CliState,
    current_state,
    fail,
    format_time,
    json_option,
    masked_url,
    render_table,
)
from .config import SourceConfig
from .deliveries import HEADER_TYPED_SCHEMES, encode_body, prepare_body, sign_delivery
from .dispatch import handler_table, load_handlers, matching_handlers
from .errors import ConfigError, StoreError
from .messages import history
from .store import EVENT_STATUSES, StoredEvent

DEFAULT_URL = "http://127.0.0.1:8000"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
# The example `send` posts when none is named, per scheme.
DEFAULT_EXAMPLES = {
    "hmac-sha256": "message.delivered.json",
    "github": "github.issues.opened.json",
    "stripe": "stripe.invoice.paid.json",
    "standard": "standard.appointment.booked.json",
    "slack": "slack.event_callback.json",
    "shopify": "shopify.orders.create.json",
}
PROGRESS_MIN_EVENTS = 200
MAX_ANSWER_CHARS = 2000


class GatewayGroup(click.Group):
    """A click group that turns the gateway's errors into exit codes.

    A :class:`ConfigError` ends the command with exit code 3 and a
    :class:`StoreError` with 4, whichever subcommand raised it.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand, translating configuration and store errors."""
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            raise CliFailure(f"configuration error: {err}", EXIT_CONFIG) from err
        except StoreError as err:
            raise CliFailure(
                f"the event store is unavailable: {err}", EXIT_STORE
            ) from err


@click.group(cls=GatewayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Operate the webhook gateway.

    Configuration comes from the same environment variables as the
    gateway (GATEWAY_CONFIG, GATEWAY_DATABASE_URL, ...). Exit codes: 0 ok,
    1 not found or declined, 2 usage error, 3 configuration error, 4 event
    store unavailable, 5 delivery refused or gateway unreachable.
    """
    state = _flask_state(ctx) or CliState()
    ctx.meta[STATE_KEY] = state
    ctx.call_on_close(state.close)


def main() -> None:
    """Entry point of the ``gateway`` console script and ``python -m gateway``."""
    logs.configure("WARNING", "text")
    cli(prog_name="gateway")


# -- send ------------------------------------------------------------------


@cli.command()
@click.argument("body", required=False)
@click.option("--source", "-s", help="Configured source to sign for.")
@click.option(
    "--url",
    envvar="INTEGRATION_WEBHOOK_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The gateway's base URL, or a full .../api/webhooks/<source> URL"
    " (default from INTEGRATION_WEBHOOK_URL).",
)
@click.option("--event-type", "-t", help="Event type (a header for github/shopify).")
@click.option("--event-id", help="Event id to put in the body or delivery header.")
@click.option("--new-id", is_flag=True, help="Use a fresh random event id.")
@click.option(
    "--header", "-H", "extra_headers", multiple=True, help="Extra 'Name: value'."
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait.")
@json_option
def send(
    body: str | None,
    source: str | None,
    url: str,
    event_type: str | None,
    event_id: str | None,
    new_id: bool,
    extra_headers: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Sign an example or a JSON file and post it to a running gateway.

    BODY is an example of examples/ (e.g. message.read.json or github.ping)
    or a path; by default, the example for the source's scheme. The
    delivery is signed with the source's configured secret, and carries
    the provider's id and type headers for github and shopify.
    """
    state = current_state()
    config = _choose_source(state, source)
    scheme = config.scheme_name
    path = _find_body(body, scheme)
    raw = path.read_bytes()
    if new_id:
        event_id = f"evt_{uuid.uuid4().hex[:20]}"
    in_body = scheme not in HEADER_TYPED_SCHEMES
    if in_body and (event_type or event_id):
        # The type and id of these schemes live in the body, so it is
        # re-encoded; otherwise the file's bytes are sent as they are.
        payload = prepare_body(
            scheme, _json_object(raw, path), event_type=event_type, event_id=event_id
        )
        raw = encode_body(payload)
    event_type = event_type or _type_from_name(path.name, scheme)
    if not in_body and not event_type:
        fail(f"a {scheme} delivery needs --event-type (e.g. issues).", EXIT_USAGE)
    delivery = sign_delivery(
        config,
        raw,
        now=time.time(),
        event_type=event_type,
        delivery_id=None if in_body else event_id,
        headers=_parse_headers(extra_headers),
    )
    target = webhook_url(url, config.name)
    session = requests.Session()
    session.trust_env = False  # only ever the URL given: no proxy, no .netrc
    try:
        response = session.post(
            target,
            data=delivery.body,
            headers=dict(delivery.headers),
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as err:
        fail(
            f"could not reach {masked_url(target)}: {type(err).__name__}",
            EXIT_DELIVERY,
        )
    finally:
        session.close()
    answer = _answer(response)
    if as_json:
        state.emit_json(
            {
                "url": masked_url(target),
                "source": config.name,
                "scheme": scheme,
                "file": path.name,
                "status": response.status_code,
                "answer": answer,
            }
        )
    else:
        state.echo(f"POST {masked_url(target)} ({config.name}, {scheme}, {path.name})")
        state.echo(f"{response.status_code} {response.reason}")
        state.echo(
            json.dumps(answer, indent=2, ensure_ascii=False)
            if not isinstance(answer, str)
            else answer
        )
    if not 200 <= response.status_code < 300:
        sys.exit(EXIT_DELIVERY)


def webhook_url(base: str, source: str) -> str:
    """Return the delivery URL of ``source`` on the gateway at ``base``.

    ``base`` is the gateway's root (``http://127.0.0.1:8000``) or any
    ``.../api/webhooks/<name>`` URL, whose source part is replaced.

    :raises click.BadParameter: not an http(s) URL.
    """
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="url")
    path = parts.path
    marker = "/api/webhooks/"
    if marker in path:
        path = path[: path.index(marker)]
    path = path.rstrip("/") + marker + quote(source, safe="")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# -- events ----------------------------------------------------------------


@cli.group()
def events() -> None:
    """List and show stored events with their handlers' outcomes."""


@events.command("list")
@click.option("--source", "-s", help="Only this source.")
@click.option("--type", "-t", "event_type", help="Exact type, or prefix ending in *.")
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="Event status.")
@click.option("--since", type=MOMENT, help="Received at or after (2h, 7d, ISO).")
@click.option("--until", type=MOMENT, help="Received before (2h, 7d, ISO).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
def events_list(
    source: str | None,
    event_type: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    as_json: bool,
) -> None:
    """List stored events, newest first."""
    state = current_state()
    found = state.store.list_events(
        source=source,
        type_prefix=event_type,
        status=status,
        since=since,
        until=until,
        limit=limit,
    )
    if as_json:
        state.emit_json([_event_summary(stored) for stored in found])
        return
    if not found:
        state.echo("No events match.")
        return
    state.echo(
        render_table(
            ("received", "source", "event id", "type", "status"),
            (
                (
                    format_time(stored.event.received_at.timestamp()),
                    stored.event.source,
                    stored.event.id,
                    stored.event.type,
                    stored.status,
                )
                for stored in found
            ),
        )
    )
    if len(found) == limit:
        state.echo(f"(the newest {limit}; use --limit for more)", err=True)


@events.command("show")
@click.argument("event_id")
@click.option("--source", "-s", help="The event's source, if ids repeat across them.")
@json_option
def events_show(event_id: str, source: str | None, as_json: bool) -> None:
    """Show one event: payload, headers, and each handler's attempts."""
    state = current_state()
    stored = _find_event(event_id, source)
    runs = state.store.handler_runs(stored.pk)
    attempts = state.store.attempts(stored.pk)
    detail = _event_summary(stored)
    detail.update(
        headers=dict(stored.event.headers),
        payload=dict(stored.event.payload),
        handlers=[
            {
                "handler": run.handler,
                "status": run.status,
                "attempts": run.attempts,
                "last_error": run.last_error,
                "next_attempt_at": format_time(run.next_attempt_at) or None,
                "duration_ms": run.duration_ms,
                "updated_at": format_time(run.updated_at),
            }
            for run in sorted(runs.values(), key=lambda run: run.handler)
        ],
        attempts=[
            {
                "handler": item.handler,
                "attempt": item.attempt,
                "status": item.status,
                "error": item.error,
                "duration_ms": item.duration_ms,
                "at": format_time(item.at),
            }
            for item in attempts
        ],
    )
    if as_json:
        state.emit_json(detail)
        return
    event = stored.event
    state.echo(f"Event {event.id}  (source {event.source}, type {event.type})")
    for label, value in (
        ("received", detail["received_at"]),
        ("status", stored.status),
        ("key id", stored.key_id or ""),
        ("store key", stored.pk),
    ):
        state.echo(f"  {label:<10} {value}")
    state.echo("\nHeaders")
    for name, value in sorted(event.headers.items()):
        state.echo(f"  {name}: {value}")
    state.echo("\nPayload")
    payload_text = json.dumps(dict(event.payload), indent=2, ensure_ascii=False)
    state.echo("\n".join("  " + line for line in payload_text.splitlines()))
    state.echo("\nHandlers")
    if not runs:
        state.echo("  (no handler has run yet)")
    else:
        state.echo(
            _indent(
                render_table(
                    ("handler", "status", "attempts", "next attempt", "last error"),
                    (
                        (
                            row["handler"],
                            row["status"],
                            row["attempts"],
                            row["next_attempt_at"] or "",
                            row["last_error"] or "",
                        )
                        for row in detail["handlers"]
                    ),
                )
            )
        )
    if attempts:
        state.echo("\nAttempts")
        state.echo(
            _indent(
                render_table(
                    ("at", "handler", "attempt", "status", "ms", "error"),
                    (
                        (
                            row["at"],
                            row["handler"],
                            row["attempt"],
                            row["status"],
                            f"{row['duration_ms']:.1f}",
                            row["error"] or "",
                        )
                        for row in detail["attempts"]
                    ),
                )
            )
        )


# -- replay and dead letters -------------------------------------------------


@cli.command("replay")
@click.argument("event_id", required=False)
@click.option("--source", "-s", help="Source of EVENT_ID, or to narrow a range.")
@click.option("--dead-letters", is_flag=True, help="Replay every dead letter.")
@click.option("--since", type=MOMENT, help="Replay events received from (2h, ISO).")
@click.option("--until", type=MOMENT, help="... and before (default: now).")
@click.option(
    "--handler", "handlers", multiple=True, help="Only these handlers (repeatable)."
)
@click.option(
    "--include-succeeded", is_flag=True, help="Also re-run handlers that succeeded."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help=f"Show progress (default: from {PROGRESS_MIN_EVENTS} events on).",
)
@json_option
def replay_command(
    event_id: str | None,
    source: str | None,
    dead_letters: bool,
    since: float | None,
    until: float | None,
    handlers: tuple[str, ...],
    include_succeeded: bool,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Queue events to run their handlers again.

    Give one EVENT_ID, or --dead-letters, or a range with --since (and
    --until). The running gateway's dispatchers then run the handlers;
    handlers that already succeeded are skipped unless
    --include-succeeded is given.
    """
    chosen = [bool(event_id), dead_letters, since is not None]
    if sum(chosen) != 1:
        raise click.UsageError("give one EVENT_ID, or --dead-letters, or --since.")
    if until is not None and since is None:
        raise click.UsageError("--until needs --since.")
    if dead_letters and include_succeeded:
        raise click.UsageError("--include-succeeded applies to an event or a range.")
    state = current_state()
    store = state.store
    selected = list(handlers) or None
    if event_id:
        stored = _find_event(event_id, source)
        queued = replay.replay_event(
            store, stored.pk, handlers=selected, include_succeeded=include_succeeded
        )
        scope: dict[str, Any] = {"event_id": event_id}
    elif dead_letters:
        total = len(store.dead_letter_pks())
        with _progress(total, progress, as_json) as step:
            queued = replay.replay_dead_letters(store, handlers=selected, progress=step)
        scope = {"dead_letters": True}
    else:
        assert since is not None
        end = time.time() if until is None else until
        total = store.count_events(source=source, since=since, until=end)
        with _progress(total, progress, as_json) as step:
            queued = replay.replay_range(
                store,
                since=since,
                until=end,
                source=source,
                handlers=selected,
                include_succeeded=include_succeeded,
                progress=step,
            )
        scope = {"since": format_time(since), "until": format_time(end)}
    if as_json:
        state.emit_json({"queued": queued, **scope})
    elif queued:
        state.echo(
            f"Queued {queued} event(s) for replay; the gateway's dispatchers"
            " will run their handlers."
        )
    else:
        state.echo("Nothing to replay.")


@cli.command("dead-letters")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.option("--purge", is_flag=True, help="Forget every dead letter, no replay.")
@click.option("--yes", "-y", is_flag=True, help="Purge without asking.")
@json_option
def dead_letters_command(limit: int, purge: bool, yes: bool, as_json: bool) -> None:
    """List (event, handler) pairs whose retries ran out, or purge them."""
    state = current_state()
    store = state.store
    if purge:
        count = len(store.dead_letter_pks())
        if count and not yes:
            if as_json or not click.confirm(
                f"Purge the dead letters of {count} event(s)? Their failed"
                " handlers will not run again.",
                err=True,
            ):
                fail("nothing was purged (confirm, or pass --yes).", EXIT_NOT_FOUND)
        purged = store.purge_dead_letters() if count else 0
        if as_json:
            state.emit_json({"purged_events": purged})
        else:
            state.echo(f"Purged the dead letters of {purged} event(s).")
        return
    letters = store.dead_letters(limit=limit)
    if as_json:
        state.emit_json(
            [
                {
                    "source": letter.source,
                    "event_id": letter.event_id,
                    "type": letter.type,
                    "handler": letter.handler,
                    "attempts": letter.attempts,
                    "last_error": letter.last_error,
                    "dead_since": format_time(letter.updated_at),
                }
                for letter in letters
            ]
        )
        return
    if not letters:
        state.echo("No dead letters.")
        return
    state.echo(
        render_table(
            ("dead since", "source", "event id", "type", "handler", "tries", "error"),
            (
                (
                    format_time(letter.updated_at),
                    letter.source,
                    letter.event_id,
                    letter.type,
                    letter.handler,
                    letter.attempts,
                    letter.last_error or "",
                )
                for letter in letters
            ),
        )
    )


# -- handlers, messages, prune ---------------------------------------------


@cli.command("handlers")
@click.option("--type", "-t", "event_type", help="Show what runs for this type.")
@click.option("--source", "-s", help="With --type: for this source only.")
@json_option
def handlers_command(event_type: str | None, source: str | None, as_json: bool) -> None:
    """List loaded handlers per event type (after loading GATEWAY_HANDLERS)."""
    state = current_state()
    load_handlers(state.settings.handler_modules)
    if event_type:
        names = [source] if source else sorted(state.settings.sources)
        rows = [
            (name, binding.name, binding.pattern)
            for name in names
            for binding in matching_handlers(name, event_type)
        ]
        if as_json:
            state.emit_json(
                [{"source": s, "handler": h, "pattern": p} for s, h, p in rows]
            )
        elif rows:
            state.echo(render_table(("source", "handler", "pattern"), rows))
        else:
            state.echo(f"No handler runs for {event_type}.")
        return
    table = handler_table()
    if as_json:
        state.emit_json(
            [
                {"pattern": pattern, "handler": name, "sources": list(sources)}
                for pattern, name, sources in table
            ]
        )
    elif table:
        state.echo(
            render_table(
                ("event type", "sources", "handler"),
                (
                    (pattern, ", ".join(sources) or "all", name)
                    for pattern, name, sources in table
                ),
            )
        )
    else:
        state.echo("No handlers are loaded; name their modules in GATEWAY_HANDLERS.")


@cli.group()
def messages() -> None:
    """Show the delivery status of messages sent through the provider."""


@messages.command("show")
@click.argument("message_id")
@json_option
def messages_show(message_id: str, as_json: bool) -> None:
    """Show a message's current status and its status history."""
    state = current_state()
    current = state.store.message_status(message_id)
    updates = history(state.store, message_id)
    if current is None and not updates:
        fail(f"no message with id {message_id!r} is known.", EXIT_NOT_FOUND)
    rows = [
        {
            "status": update.status,
            "status_at": format_time(update.status_at) or None,
            "event_id": update.event_id,
            "error": update.error,
            "recorded_at": format_time(update.recorded_at),
        }
        for update in updates
    ]
    if as_json:
        state.emit_json({"message_id": message_id, "status": current, "history": rows})
        return
    state.echo(f"Message {message_id}: {current or 'unknown'}")
    state.echo(
        render_table(
            ("recorded", "status", "status at", "event id", "error"),
            (
                (
                    row["recorded_at"],
                    row["status"],
                    row["status_at"] or "",
                    row["event_id"] or "",
                    row["error"] or "",
                )
                for row in rows
            ),
        )
    )


@cli.command("prune")
@click.option(
    "--older-than-days",
    type=click.FloatRange(0),
    help="Age in days (default: GATEWAY_RETENTION_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Count only; delete nothing.")
@json_option
def prune_command(older_than_days: float | None, dry_run: bool, as_json: bool) -> None:
    """Delete fully handled events past the retention period.

    Pending events and events with dead letters are kept.
    """
    state = current_state()
    days = state.settings.retention_days if older_than_days is None else older_than_days
    now = time.time()
    cutoff = now - days * replay.DAY_SECONDS
    if dry_run:
        count = state.store.count_events(status="done", until=cutoff)
    else:
        count = replay.prune(state.store, retention_days=days, now=now)
    if as_json:
        state.emit_json(
            {
                "deleted": 0 if dry_run else count,
                "matching": count,
                "before": format_time(cutoff),
            }
        )
        return
    verb = "Would delete" if dry_run else "Deleted"
    state.echo(f"{verb} {count} event(s) received before {format_time(cutoff)}.")


# -- config ----------------------------------------------------------------


@cli.group("config")
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
        _indent(
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
        _indent(
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


# -- helpers -----------------------------------------------------------------


def _flask_state(ctx: click.Context) -> CliState | None:
    """Use the Flask app's settings and store under ``flask gateway``."""
    from flask.cli import ScriptInfo

    info = ctx.find_object(ScriptInfo)
    if info is None:
        return None
    app = info.load_app()
    gateway = app.extensions.get("gateway")
    if gateway is None:
        return None
    # Loading the app started its dispatcher; a command must not run
    # handlers as a side effect, so it is stopped at once.
    if gateway.dispatcher.is_running():
        gateway.dispatcher.stop(timeout_seconds=5.0)
    return CliState(settings=gateway.settings, store=gateway.store)


def _choose_source(state: CliState, name: str | None) -> SourceConfig:
    sources = state.settings.sources
    if name is None:
        if "integration" in sources:
            name = "integration"
        elif len(sources) == 1:
            name = next(iter(sources))
        else:
            raise click.UsageError(
                "choose a source with --source: " + ", ".join(sorted(sources))
            )
    if name not in sources:
        raise click.UsageError(
            f"no source {name!r} is configured; configured: "
            + ", ".join(sorted(sources))
        )
    return sources[name]


def _find_body(body: str | None, scheme: str) -> Path:
    if body is None:
        body = DEFAULT_EXAMPLES[scheme]
    for candidate in (
        Path(body),
        EXAMPLES_DIR / body,
        EXAMPLES_DIR / f"{body}.json",
    ):
        if candidate.is_file():
            return candidate
    available = sorted(path.name for path in EXAMPLES_DIR.glob("*.json"))
    raise click.BadParameter(
        f"{body!r} is neither a file nor an example; examples: "
        + (", ".join(available) or "none"),
        param_hint="BODY",
    )


def _type_from_name(name: str, scheme: str) -> str | None:
    """Read the github event or shopify topic from an example's file name."""
    parts = name.removesuffix(".json").split(".")
    if scheme not in HEADER_TYPED_SCHEMES or len(parts) < 2 or parts[0] != scheme:
        return None
    if scheme == "github":
        return parts[1]
    return "/".join(parts[1:])


def _json_object(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise click.BadParameter(f"{path.name} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"{path.name} does not hold a JSON object.")
    return value


def _parse_headers(items: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, separator, value = item.partition(":")
        if not separator or not name.strip():
            raise click.BadParameter(
                f"{item!r} is not 'Name: value'", param_hint="--header"
            )
        headers[name.strip()] = value.strip()
    return headers


def _answer(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:MAX_ANSWER_CHARS]


def _find_event(event_id: str, source: str | None) -> StoredEvent:
    stored = current_state().store.find_event(event_id, source)
    if stored is None:
        where = f" in source {source!r}" if source else ""
        fail(f"no event with id {event_id!r}{where} is stored.", EXIT_NOT_FOUND)
    return stored


def _event_summary(stored: StoredEvent) -> dict[str, Any]:
    event = stored.event
    return {
        "source": event.source,
        "id": event.id,
        "type": event.type,
        "status": stored.status,
        "received_at": format_time(event.received_at.timestamp()),
        "key_id": stored.key_id,
        "store_key": stored.pk,
    }


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


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@contextlib.contextmanager
def _progress(
    total: int, wanted: bool | None, as_json: bool
) -> Iterator[Callable[[int], None] | None]:
    """Yield a step callback drawing a bar on stderr, or None for no bar."""
    show = wanted if wanted is not None else total >= PROGRESS_MIN_EVENTS
    if not show or as_json or not total:
        yield None
        return
    with click.progressbar(
        length=total,
        label="Queueing events",
        file=sys.stderr,
    ) as bar:
        yield bar.update
