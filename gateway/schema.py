"""The event store's tables: creation statements and column upgrades.

Both back-ends share these statements. ``{serial}`` and ``{real}`` stand
for the back-end's auto-increment key and floating-point column types
(``INTEGER`` and ``REAL`` on SQLite, ``BIGSERIAL`` and ``DOUBLE
PRECISION`` on PostgreSQL). :meth:`gateway.store.Store.migrate` runs
:func:`create_statements`, then :func:`upgrade_statements`, in one
transaction.
"""

from __future__ import annotations

from collections.abc import Collection

# Columns added after the first release: (name, definition).
# upgrade_statements() adds the ones an existing database lacks.
ADDED_EVENT_COLUMNS = (
    ("duplicates", "INTEGER NOT NULL DEFAULT 0"),
    ("last_duplicate_at", "{real}"),
)
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        pk {serial} PRIMARY KEY,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        received_at {real} NOT NULL,
        payload TEXT NOT NULL,
        headers TEXT NOT NULL,
        key_id TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        next_attempt_at {real} NOT NULL,
        lease_owner TEXT,
        lease_until {real},
        finished_at {real},
        duplicates INTEGER NOT NULL DEFAULT 0,
        last_duplicate_at {real},
        UNIQUE (source, event_id)
    )""",
    """CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at)
        WHERE status = 'pending'""",
    "CREATE INDEX IF NOT EXISTS events_received ON events (received_at)",
    # Keyset pages of one source, status or type, newest first, read an
    # index range instead of scanning every event (the console, issue 9).
    "CREATE INDEX IF NOT EXISTS events_source_pk ON events (source, pk)",
    "CREATE INDEX IF NOT EXISTS events_status_pk ON events (status, pk)",
    "CREATE INDEX IF NOT EXISTS events_type_pk ON events (type, pk)",
    """CREATE TABLE IF NOT EXISTS handler_runs (
        event_pk BIGINT NOT NULL REFERENCES events (pk) ON DELETE CASCADE,
        handler TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        next_attempt_at {real},
        duration_ms {real},
        updated_at {real} NOT NULL,
        PRIMARY KEY (event_pk, handler)
    )""",
    "CREATE INDEX IF NOT EXISTS handler_runs_dead ON handler_runs (status)",
    """CREATE TABLE IF NOT EXISTS handler_attempts (
        event_pk BIGINT NOT NULL REFERENCES events (pk) ON DELETE CASCADE,
        handler TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        duration_ms {real} NOT NULL,
        at {real} NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS handler_attempts_event
        ON handler_attempts (event_pk)""",
    "CREATE INDEX IF NOT EXISTS handler_attempts_at ON handler_attempts (at)",
    """CREATE TABLE IF NOT EXISTS messages (
        message_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        rank INTEGER NOT NULL,
        status_at {real},
        updated_at {real} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS message_history (
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        status_at {real},
        event_id TEXT,
        error TEXT,
        recorded_at {real} NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS message_history_id
        ON message_history (message_id)""",
]
# Statements that need the columns upgrade_statements() may have just
# added.
UPGRADED_SCHEMA = [
    # The console's "duplicate" filter reads only the events that had a
    # repeat, newest first, however few they are among a million.
    """CREATE INDEX IF NOT EXISTS events_duplicate_pk ON events (pk)
        WHERE duplicates > 0""",
]


def create_statements(serial: str, real: str) -> list[str]:
    """Return the statements creating every table and index, if missing."""
    return [statement.format(serial=serial, real=real) for statement in SCHEMA]


def upgrade_statements(present: Collection[str], real: str) -> list[str]:
    """Return the statements bringing an older ``events`` table up to date.

    ``present`` holds the names of the columns the table has. Each
    column added since the first release that is missing gets an ``ALTER
    TABLE`` (existing rows take its default); the indexes that need those
    columns follow.
    """
    statements = [
        f"ALTER TABLE events ADD COLUMN {name} {definition.format(real=real)}"
        for name, definition in ADDED_EVENT_COLUMNS
        if name not in present
    ]
    return statements + list(UPGRADED_SCHEMA)
