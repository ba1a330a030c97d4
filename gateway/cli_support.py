"""Plumbing shared by the command-line tool's commands.

Exit codes, the per-invocation state (settings and store, opened on first
use), output as tables or JSON with every configured secret masked, and
the parsing of times such as ``2h`` or ``2026-01-31T12:00``. Commands
added to the ``gateway`` group from other modules use the same helpers,
so their output and exit codes follow the same rules.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import click

from . import logs
from .config import Settings, load_settings, secret_values, take_generated_secrets
from .store import Store, open_store

# Exit codes scripts can rely on (README, "Operating: command-line tool").
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_STORE = 4
EXIT_DELIVERY = 5
MASK = "[redacted]"
STATE_KEY = "gateway.cli.state"
MAX_CELL_CHARS = 60
# Environment variables whose values are masked even when the
# configuration cannot be loaded (a ConfigError message could echo one).
_SENSITIVE_NAME = re.compile(r"(SECRET|API_KEY|TOKEN|PASSWORD)", re.IGNORECASE)
# The last second a date-time can show (9999-12-31T23:59:59Z).
LAST_MOMENT = 253_402_300_799
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
F = TypeVar("F", bound=Callable[..., Any])


class CliFailure(click.ClickException):
    """A failure that ends the command with a documented exit code.

    The message is shown on stderr after ``Error:``, with every known
    secret masked.
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the masked message to stderr (or ``file``)."""
        click.echo(f"Error: {current_state().mask(self.message)}", err=True, file=file)


class CliState:
    """What one invocation works on: settings and store, loaded lazily.

    Under ``flask gateway`` the Flask app's own settings and store are
    used; otherwise the configuration is read from the environment, as
    the gateway itself reads it.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        store: Store | None = None,
    ):
        self._settings = settings
        self._store = store
        self._owns_store = store is None
        self.generated_secret_files: list[str] = []
        if settings is not None:
            logs.register_secrets(secret_values(settings))

    @property
    def settings(self) -> Settings:
        """The validated configuration; :class:`ConfigError` if invalid."""
        if self._settings is None:
            settings = load_settings()
            logs.register_secrets(secret_values(settings))
            # A development secret created here is never printed: the
            # file that holds it is named instead (CONTRACT.md section 4).
            self.generated_secret_files = [
                path for _, _, path in take_generated_secrets()
            ]
            self._settings = settings
        return self._settings

    @property
    def store(self) -> Store:
        """The event store, schema created; :class:`StoreError` if down."""
        if self._store is None:
            self._store = open_store(self.settings.database_url, pool_size=1)
            self._owns_store = True
        self._store.migrate()
        return self._store

    def close(self) -> None:
        """Close the store if this invocation opened it."""
        if self._store is not None and self._owns_store:
            self._store.close()
            self._store = None

    def secret_values(self) -> list[str]:
        """Every value that must never be printed."""
        values: list[str] = []
        if self._settings is not None:
            values.extend(secret_values(self._settings))
            values.extend(
                password
                for url in (
                    self._settings.database_url,
                    self._settings.ratelimit_storage_uri,
                )
                if (password := urlsplit(url).password)
            )
        values.extend(
            value.strip()
            for name, value in os.environ.items()
            if _SENSITIVE_NAME.search(name) and len(value.strip()) >= 4
        )
        for value in list(values):
            values.extend(part.strip() for part in value.split(",") if part.strip())
        return sorted(
            {value for value in values if len(value) >= 4}, key=len, reverse=True
        )

    def mask(self, text: str) -> str:
        """Return ``text`` with every secret (also JSON-escaped) masked."""
        for secret in self.secret_values():
            for form in (secret, json.dumps(secret)[1:-1]):
                if form in text:
                    text = text.replace(form, MASK)
        return text

    def echo(self, text: str = "", *, err: bool = False, nl: bool = True) -> None:
        """Print ``text`` with secrets masked."""
        click.echo(self.mask(text), err=err, nl=nl)

    def emit_json(self, value: Any) -> None:
        """Print ``value`` as indented JSON, secrets masked."""
        self.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def current_state() -> CliState:
    """Return the state of the running invocation, creating it if needed."""
    context = click.get_current_context(silent=True)
    if context is None:
        return CliState()
    state = context.meta.get(STATE_KEY)
    if state is None:
        state = context.meta[STATE_KEY] = CliState()
        context.call_on_close(state.close)
    assert isinstance(state, CliState)
    return state


def json_option(function: F) -> F:
    """Add ``--json``: machine-readable output instead of a table."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON for scripts instead of a table.",
    )(function)


def fail(message: str, exit_code: int) -> NoReturn:
    """End the command with ``message`` on stderr and ``exit_code``."""
    raise CliFailure(message, exit_code)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Lay out rows under headers in aligned columns, long cells cut."""
    cells = [[shorten(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    lines = [
        "  ".join(header.upper().ljust(widths[i]) for i, header in enumerate(headers))
    ]
    lines.extend(
        "  ".join(value.ljust(widths[i]) for i, value in enumerate(row))
        for row in cells
    )
    return "\n".join(line.rstrip() for line in lines)


def indent(text: str) -> str:
    """Indent every line of ``text`` by two spaces."""
    return "\n".join("  " + line for line in text.splitlines())


def format_time(moment: float | None) -> str:
    """Show a unix time as ISO 8601 UTC (``2026-01-31T12:00:00Z``)."""
    if moment is None:
        return ""
    return iso_time(moment).replace("+00:00", "Z")


def iso_time(moment: float) -> str:
    """Show a unix time as ISO 8601 UTC (``2026-01-31T12:00:00+00:00``)."""
    return datetime.fromtimestamp(float(moment), tz=UTC).isoformat(timespec="seconds")


def parse_iso_time(text: str) -> float:
    """Read an ISO 8601 date or date-time as unix seconds; no zone is UTC.

    :raises ValueError: the text is not ISO 8601 (the message is
        Python's; callers say it in their own words).
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_moment(text: str, *, now: float | None = None) -> float:
    """Read a time as unix seconds: ``now``, ``2h`` ago, or ISO 8601.

    Relative times count back from now in s, m, h, d or w (``90m``,
    ``7d``). An ISO date or date-time without a zone is taken as UTC.

    :raises ValueError: the text is neither.
    """
    moment = time.time() if now is None else now
    cleaned = text.strip()
    if cleaned.lower() == "now":
        return moment
    relative = _RELATIVE.match(cleaned)
    try:
        if relative:
            amount, unit = relative.groups()
            result = moment - float(amount) * _UNIT_SECONDS[unit.lower()]
        else:
            result = parse_iso_time(cleaned)
    except (ValueError, OverflowError):
        result = None
    if result is None or not 0 <= result <= LAST_MOMENT:
        raise ValueError(
            f"{text!r} is not a time; use e.g. 2h, 30m, 7d or 2026-01-31T12:00"
        )
    return result


class MomentType(click.ParamType):  # type: ignore[type-arg]
    """A click parameter holding a time, as :func:`parse_moment` reads it."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Return unix seconds, or fail the usage (exit code 2)."""
        if isinstance(value, float):
            return value
        try:
            return parse_moment(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


MOMENT = MomentType()


def masked_url(url: str) -> str:
    """Return ``url`` with its password, query string and fragment removed."""
    text = url.split("#", 1)[0].split("?", 1)[0]
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rsplit("@", 1)[1]
    masked_netloc = f"{parts.username or ''}:{MASK}@{host}"
    return text.replace(parts.netloc, masked_netloc, 1)


def shorten(value: Any, limit: int = MAX_CELL_CHARS) -> str:
    """Return ``value`` on one line of at most ``limit`` characters.

    None is shown empty, runs of white space as one space; a longer text
    is cut to end with ``...``.
    """
    text = " ".join(("" if value is None else str(value)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
