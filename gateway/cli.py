"""The ``gateway`` command-line tool: commands only, over the other modules.

Run it as ``gateway ...`` (the console script of ``pyproject.toml``), as
``python -m gateway ...``, or as ``flask --app app gateway ...``: the same
click group :data:`cli` serves all three. Other modules add commands to
it with ``cli.add_command``. Exit codes are those of
:mod:`gateway.cli_support` and the README; no command ever prints a
secret.
"""

from __future__ import annotations

from typing import Any

import click

from . import logs
from .cli_config import config_group
from .cli_events import register as register_event_commands
from .cli_recovery import PROGRESS_MIN_EVENTS
from .cli_recovery import register as register_recovery_commands
from .cli_refusals import register as register_refusal_commands
from .cli_send import send, webhook_url
from .cli_support import (
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    STATE_KEY,
    CliFailure,
    CliState,
    current_state,
    fail,
    format_time,
    json_option,
    render_table,
)
from .errors import ConfigError, StoreError
from .messages import history
from .signals import handler_table, load_handlers, matching_handlers

__all__ = ["PROGRESS_MIN_EVENTS", "cli", "main", "webhook_url"]

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


# -- handlers, messages -----------------------------------------------------


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


# Events, replay and dead letters, refusal diagnosis, secret usage and the
# live tail live in their own modules.
register_event_commands(cli)
register_recovery_commands(cli)
register_refusal_commands(cli)
