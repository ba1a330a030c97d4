"""The ``gateway events`` commands: list stored events and show one in full.

``events show`` prints an event's payload, headers, duplicates and each
handler's attempts; :func:`find_event` is shared with ``gateway replay``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .cli_support import (
    EXIT_NOT_FOUND,
    MOMENT,
    current_state,
    fail,
    format_time,
    indent,
    json_option,
    render_table,
)
from .store import EVENT_STATUSES, StoredEvent


def register(group: click.Group) -> None:
    """Add this module's commands to the gateway's command group."""
    group.add_command(events)


@click.group()
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
    stored = find_event(event_id, source)
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


def find_event(event_id: str, source: str | None) -> StoredEvent:
    """The stored event ``event_id``, or exit 1 saying none is stored."""
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
