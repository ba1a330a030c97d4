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
from collections.abc import Callable, Iterator
from typing import Any

import click

from . import logs, replay
from .cli_config import config_group
from .cli_refusals import register as register_refusal_commands
from .cli_send import send, webhook_url
from .cli_support import (
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    MOMENT,
    STATE_KEY,
    CliFailure,
    CliState,
    current_state,
    fail,
    format_time,
    indent,
    json_option,
    render_table,
)
from .errors import ConfigError, StoreError
from .messages import history
from .signals import handler_table, load_handlers, matching_handlers
from .store import EVENT_STATUSES, StoredEvent

__all__ = ["cli", "main", "webhook_url"]

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


cli.add_command(send)
cli.add_command(config_group)


def main() -> None:
    """Entry point of the ``gateway`` console script and ``python -m gateway``."""
    logs.configure("WARNING", "text")
    cli(prog_name="gateway")


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
        ("duplicates", _duplicates_text(stored)),
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
            indent(
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
            indent(
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
        "duplicates": stored.duplicates,
        "last_duplicate_at": format_time(stored.last_duplicate_at) or None,
    }


def _duplicates_text(stored: StoredEvent) -> str:
    if not stored.duplicates:
        return "0"
    last = format_time(stored.last_duplicate_at)
    return f"{stored.duplicates} (last {last})"


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


# Refusal diagnosis, secret usage and the live tail live in their own module.
register_refusal_commands(cli)
