"""Recovery commands: ``gateway replay``, ``dead-letters`` and ``prune``.

Replay queues stored events to run their handlers again (one event, every
dead letter, or a time range, with a progress bar on long runs);
``dead-letters`` lists or purges the (event, handler) pairs whose retries
ran out; ``prune`` deletes fully handled events past the retention period.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from . import replay
from .cli_events import find_event
from .cli_support import (
    EXIT_NOT_FOUND,
    MOMENT,
    current_state,
    fail,
    format_time,
    json_option,
    render_table,
)

PROGRESS_MIN_EVENTS = 200


def register(group: click.Group) -> None:
    """Add this module's commands to the gateway's command group."""
    for command in (replay_command, dead_letters_command, prune_command):
        group.add_command(command)


@click.command("replay")
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
        stored = find_event(event_id, source)
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


@click.command("dead-letters")
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


@click.command("prune")
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
