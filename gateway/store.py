"""Durable event store: the inbox, deduplication and handler outcomes.

One SQL design serves two back-ends: SQLite (embedded default, in
:mod:`gateway.store_sqlite`) and PostgreSQL (many workers on many hosts,
in :mod:`gateway.store_postgres`); the tables are in
:mod:`gateway.schema`. This module holds the :class:`Store` base class,
its schema and health methods, and :func:`open_store`. Store's queries
are grouped by concern in mixins: the inbox and claims
(:mod:`gateway.store_inbox`), handler outcomes
(:mod:`gateway.store_outcomes`), reading and reports
(:mod:`gateway.store_reads`), replay and retention
(:mod:`gateway.store_replay`) and message statuses
(:mod:`gateway.store_messages`), all written against
:mod:`gateway.store_base`. The records they return are in
:mod:`gateway.store_types`. Callers import every public name from here,
both back-ends included (loaded on first use). Deduplication is the
unique key on (source, event id), so it holds across processes. The
store knows nothing of HTTP; driver errors are translated to
:class:`StoreError` at this boundary.

All times are unix seconds (float).
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, StoreError
from .schema import create_statements, upgrade_statements
from .store_inbox import InboxQueries
from .store_messages import MessageQueries
from .store_outcomes import OutcomeQueries
from .store_reads import ReadQueries
from .store_replay import ReplayQueries
from .store_types import (
    EVENT_STATUSES,
    RUN_STATUSES,
    Attempt,
    AttemptRecord,
    Cursor,
    DeadLetter,
    HandlerRun,
    MessageUpdate,
    StoredEvent,
    Try,
)

if TYPE_CHECKING:
    from .store_postgres import PostgresStore as PostgresStore
    from .store_sqlite import SQLiteStore as SQLiteStore

__all__ = [
    "EVENT_STATUSES",
    "RUN_STATUSES",
    "Attempt",
    "AttemptRecord",
    "Cursor",
    "DeadLetter",
    "HandlerRun",
    "MessageUpdate",
    "PostgresStore",
    "SQLiteStore",
    "Store",
    "StoredEvent",
    "Try",
    "open_store",
]


class Store(InboxQueries, OutcomeQueries, ReadQueries, ReplayQueries, MessageQueries):
    """Persistence for events, handler outcomes and message statuses.

    Thread-safe: each thread uses its own connection (SQLite) or a pooled
    one (PostgreSQL). Every method raises :class:`StoreError` on failure.
    """

    # -- connection handling, per back-end -------------------------------
    # (_transaction and _sql are declared on StoreBase, for the mixins.)

    @abstractmethod
    def close(self) -> None:
        """Release every connection."""

    # -- schema and health -------------------------------------------------

    def migrate(self) -> None:
        """Create the tables and indexes this version needs, if missing.

        A database made by an earlier version gets the columns added
        since (``duplicates``, ``last_duplicate_at``); existing rows take
        their defaults. Runs in one transaction; concurrent workers are
        serialised (PostgreSQL's advisory lock, SQLite's write lock).
        A schema already current is left alone without taking any lock
        (see :meth:`_apply_schema`).
        """
        serial, real = self._column_types()

        def apply(cursor: Cursor) -> None:
            for statement in create_statements(serial, real):
                cursor.execute(statement)
            present = self._column_names(cursor, "events")
            for statement in upgrade_statements(present, real):
                cursor.execute(statement)

        self._apply_schema(create_statements(serial, real), apply)

    def create_tables(self, statements: Sequence[str]) -> None:
        """Create a companion module's tables and indexes, if missing.

        Statements may use ``{serial}`` and ``{real}`` for the back-end's
        auto-increment key and floating-point column types. They run in
        one transaction, serialised like :meth:`migrate`.
        """
        serial, real = self._column_types()
        formatted = [
            statement.format(serial=serial, real=real) for statement in statements
        ]

        def apply(cursor: Cursor) -> None:
            for statement in formatted:
                cursor.execute(statement)

        self._apply_schema(formatted, apply)

    def _apply_schema(
        self, statements: Sequence[str], apply: Callable[[Cursor], None]
    ) -> None:
        # Even "CREATE INDEX IF NOT EXISTS" locks its table on PostgreSQL,
        # which deadlocked with live inserts whenever a worker started
        # under load. So a mark of each applied set of statements is kept,
        # and a set already applied is skipped after one cheap read.
        mark = hashlib.sha256("\n".join(statements).encode()).hexdigest()
        if self._has_schema_mark(mark):
            return
        with self._transaction() as cursor:
            self._lock_schema(cursor)
            apply(cursor)
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS schema_marks (mark TEXT PRIMARY KEY)"
            )
            cursor.execute(
                self._sql(
                    "INSERT INTO schema_marks (mark) VALUES (?)"
                    " ON CONFLICT (mark) DO NOTHING"
                ),
                (mark,),
            )

    def _has_schema_mark(self, mark: str) -> bool:
        try:
            with self._transaction() as cursor:
                cursor.execute(
                    self._sql("SELECT 1 FROM schema_marks WHERE mark = ?"), (mark,)
                )
                return cursor.fetchone() is not None
        except StoreError:
            # No marks table yet (a new or older database): apply in full.
            return False

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement of a companion module in its own transaction.

        ``?`` placeholders are translated for the back-end. Returns the
        rows the statement yields (an empty list when it yields none).
        """
        with self._transaction() as cursor:
            cursor.execute(self._sql(statement), params)
            if getattr(cursor, "description", None) is None:
                return []
            return list(cursor.fetchall())

    def _column_types(self) -> tuple[str, str]:
        return "INTEGER", "REAL"

    def _lock_schema(self, cursor: Cursor) -> None:
        """Keep concurrent workers from racing on DDL (PostgreSQL only)."""
        return None

    def _column_names(self, cursor: Cursor, table: str) -> set[str]:
        """Return the names of a table's columns."""
        cursor.execute(f"PRAGMA table_info({table})")
        return {row[1] for row in cursor.fetchall()}

    def ping(self) -> None:
        """Check the store answers; raise :class:`StoreError` if not."""
        with self._transaction() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()


def open_store(url: str, *, pool_size: int = 4) -> Store:
    """Open the store named by a ``GATEWAY_DATABASE_URL`` value.

    :raises ConfigError: the URL names no supported back-end.
    """
    # Imported here: both back-ends import this module for Store.
    if url.startswith("sqlite:///"):
        from .store_sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///") :] or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from .store_postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    raise ConfigError(
        "GATEWAY_DATABASE_URL must start with sqlite:/// or postgresql://"
    )


def __getattr__(name: str) -> Any:
    """Load a back-end class on first use, for ``from gateway.store import``.

    The back-ends subclass :class:`Store`, so importing them at the top
    of this module would make an import cycle.
    """
    if name == "SQLiteStore":
        from .store_sqlite import SQLiteStore

        return SQLiteStore
    if name == "PostgresStore":
        from .store_postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
