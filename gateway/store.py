"""Durable event store: the inbox, deduplication and handler outcomes.

One SQL design serves two back-ends: SQLite (embedded default, in
:mod:`gateway.store_sqlite`) and PostgreSQL (many workers on many hosts,
in :mod:`gateway.store_postgres`); the tables are in
:mod:`gateway.schema`. This module holds what they share: the
:class:`Store` base class with every query, the records it returns and
:func:`open_store`. It also re-exports both back-ends, loaded on first
use. Deduplication is the unique key on (source, event id), so it holds
across processes. The store knows nothing of HTTP; driver errors are
translated to :class:`StoreError` at this boundary.

All times are unix seconds (float).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfigError, StoreError
from .events import Event
from .schema import create_statements, upgrade_statements

if TYPE_CHECKING:
    from .store_postgres import PostgresStore as PostgresStore
    from .store_sqlite import SQLiteStore as SQLiteStore

EVENT_STATUSES = ("pending", "done", "dead")
RUN_STATUSES = ("ok", "retrying", "dead")
_EVENT_COLUMNS = (
    "pk, source, event_id, type, received_at, payload, headers, status, key_id,"
    " duplicates, last_duplicate_at"
)
# A repeat of (source, event id) is counted on the stored event by the
# same statement that tried to insert it, so recording duplicates costs
# no extra round trip. RETURNING gives the row's count after the
# statement: 0 for a new event, 1 or more for a repeat (issue 9).
_INSERT_EVENT = (
    "INSERT INTO events (source, event_id, type, received_at, payload, headers,"
    " key_id, status, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)"
    " ON CONFLICT (source, event_id) DO UPDATE"
    " SET duplicates = events.duplicates + 1,"
    " last_duplicate_at = excluded.received_at"
    " RETURNING duplicates"
)


@dataclass
class _PendingInsert:
    """One row waiting for the group commit, then its outcome."""

    params: tuple[Any, ...]
    inserted: bool = False
    error: BaseException | None = None
    done: bool = False


@dataclass(frozen=True)
class StoredEvent:
    """An event as the store holds it, with its inbox bookkeeping."""

    pk: int
    event: Event
    status: str
    key_id: str | None = None
    duplicates: int = 0
    last_duplicate_at: float | None = None


@dataclass(frozen=True)
class HandlerRun:
    """The latest outcome of one handler for one event."""

    handler: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    duration_ms: float | None
    updated_at: float


@dataclass(frozen=True)
class AttemptRecord:
    """One try of one handler, as the dispatcher hands it to the store."""

    handler: str
    attempt: int
    status: str
    error: str | None
    duration_ms: float
    now: float
    next_attempt_at: float | None = None


@dataclass(frozen=True)
class Attempt:
    """One try of one handler on one event."""

    handler: str
    attempt: int
    status: str
    error: str | None
    duration_ms: float
    at: float


@dataclass(frozen=True)
class Try:
    """One handler try with its delay since the event's receipt, for reports."""

    handler: str
    attempt: int
    status: str
    duration_ms: float
    at: float
    seconds_since_receipt: float


@dataclass(frozen=True)
class DeadLetter:
    """An (event, handler) pair whose retries are exhausted."""

    pk: int
    source: str
    event_id: str
    type: str
    handler: str
    attempts: int
    last_error: str | None
    updated_at: float


@dataclass(frozen=True)
class MessageUpdate:
    """One recorded status change of an outbound message."""

    message_id: str
    status: str
    status_at: float | None
    event_id: str | None
    error: str | None
    recorded_at: float


class Cursor(Protocol):
    """The part of a database cursor the store's queries use."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class Store(ABC):
    """Persistence for events, handler outcomes and message statuses.

    Thread-safe: each thread uses its own connection (SQLite) or a pooled
    one (PostgreSQL). Every method raises :class:`StoreError` on failure.
    """

    kind: str = ""
    _claim_suffix = ""

    def __init__(self) -> None:
        # Group commit of inserts (see insert_event): the queue of rows
        # waiting and the lock held by the thread committing a batch.
        self._pending: list[_PendingInsert] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    # -- connection handling, per back-end -------------------------------

    @abstractmethod
    def _transaction(self) -> Any:
        """Return a context manager yielding a cursor inside one transaction."""

    @abstractmethod
    def close(self) -> None:
        """Release every connection."""

    def _sql(self, statement: str) -> str:
        return statement

    # -- schema and health -------------------------------------------------

    def migrate(self) -> None:
        """Create the tables and indexes this version needs, if missing.

        A database made by an earlier version gets the columns added
        since (``duplicates``, ``last_duplicate_at``); existing rows take
        their defaults. Runs in one transaction; concurrent workers are
        serialised (PostgreSQL's advisory lock, SQLite's write lock).
        """
        serial, real = self._column_types()
        with self._transaction() as cursor:
            self._lock_schema(cursor)
            for statement in create_statements(serial, real):
                cursor.execute(statement)
            present = self._column_names(cursor, "events")
            for statement in upgrade_statements(present, real):
                cursor.execute(statement)

    def create_tables(self, statements: Sequence[str]) -> None:
        """Create a companion module's tables and indexes, if missing.

        Statements may use ``{serial}`` and ``{real}`` for the back-end's
        auto-increment key and floating-point column types. They run in
        one transaction, serialised like :meth:`migrate`.
        """
        serial, real = self._column_types()
        with self._transaction() as cursor:
            self._lock_schema(cursor)
            for statement in statements:
                cursor.execute(statement.format(serial=serial, real=real))

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

    # -- the inbox -----------------------------------------------------------

    def insert_event(
        self,
        event: Event,
        key_id: str | None = None,
        *,
        payload_json: str | None = None,
    ) -> bool:
        """Store a new event durably; return False if (source, id) exists.

        A repeat is not stored again: the stored event's ``duplicates``
        count goes up by one and ``last_duplicate_at`` takes the repeat's
        receipt time, in the same statement.

        The write is committed before this returns, so the caller may
        acknowledge the delivery. Concurrent calls in one process are
        committed together (group commit): while one transaction commits,
        the inserts that arrive queue up and the next transaction takes
        them all, so a burst costs one commit (one fsync) per batch, not
        per event, and every caller still returns only once its own row
        is committed.

        :param payload_json: the payload as JSON text when the caller has
            it (the delivery's own body), stored as is instead of encoding
            the parsed payload again.
        """
        received = event.received_at.timestamp()
        pending = _PendingInsert(
            (
                event.source,
                event.id,
                event.type,
                received,
                payload_json if payload_json is not None else _dump(event.payload),
                _dump(dict(event.headers)),
                key_id,
                received,
            )
        )
        with self._pending_lock:
            self._pending.append(pending)
        with self._commit_lock:
            if not pending.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit_inserts(batch)
        if pending.error is not None:
            raise pending.error
        return pending.inserted

    def _commit_inserts(self, batch: list[_PendingInsert]) -> None:
        """Insert a batch in one transaction, or each alone if that fails.

        Committing each alone after a failed batch keeps one bad row from
        refusing the deliveries that happened to share its transaction.
        Every item leaves marked done, with its outcome or its error, so
        no caller can mistake an unwritten row for a duplicate.
        """
        try:
            try:
                self._insert_rows(batch)
            except Exception as err:  # decided per item below
                if len(batch) == 1:
                    batch[0].error = err
                else:
                    for item in batch:
                        try:
                            self._insert_rows([item])
                        except Exception as item_err:  # this item's own outcome
                            item.error = item_err
        finally:
            for item in batch:
                if not item.done and item.error is None:
                    item.error = StoreError("the event store write was interrupted")
                item.done = True

    def _insert_rows(self, batch: list[_PendingInsert]) -> None:
        with self._transaction() as cursor:
            for item in batch:
                cursor.execute(self._sql(_INSERT_EVENT), item.params)
                item.inserted = cursor.fetchone()[0] == 0
        for item in batch:
            item.done = True

    def claim_due(
        self, owner: str, *, now: float, lease_seconds: float, limit: int = 10
    ) -> list[StoredEvent]:
        """Lease up to ``limit`` due events to ``owner`` atomically.

        An event is due when pending, its next attempt time has come and no
        live lease holds it; a lease left by a dead worker expires after
        ``lease_seconds`` and the event is claimed again.
        """
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE events SET lease_owner = ?, lease_until = ?"
                    " WHERE pk IN (SELECT pk FROM events WHERE status = 'pending'"
                    " AND next_attempt_at <= ?"
                    " AND (lease_until IS NULL OR lease_until < ?)"
                    " ORDER BY next_attempt_at LIMIT ?" + self._claim_suffix + ")"
                    f" RETURNING {_EVENT_COLUMNS}"
                ),
                (owner, now + lease_seconds, now, now, limit),
            )
            rows = cursor.fetchall()
        return sorted((_stored_event(row) for row in rows), key=lambda item: item.pk)

    def extend_claim(self, pk: int, owner: str, until: float) -> bool:
        """Push out the lease ``owner`` holds on an event; False if lost."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE events SET lease_until = ? WHERE pk = ? AND lease_owner = ?"
                    " RETURNING pk"
                ),
                (until, pk, owner),
            )
            return cursor.fetchone() is not None

    def finish_claim(
        self,
        pk: int,
        owner: str,
        *,
        status: str,
        next_attempt_at: float,
        now: float,
        record: AttemptRecord | None = None,
    ) -> None:
        """Release ``owner``'s lease and set the event's status.

        :param status: ``pending`` (retries remain, due at
            ``next_attempt_at``), ``done`` or ``dead``.
        :param record: the last handler's try, written in the same
            transaction (one commit per event instead of two).
        """
        if status not in EVENT_STATUSES:
            raise ValueError(f"unknown event status {status!r}")
        with self._transaction() as cursor:
            if record is not None:
                self._write_attempt(cursor, pk, record)
            cursor.execute(
                self._sql(
                    "UPDATE events SET status = ?, next_attempt_at = ?,"
                    " lease_owner = NULL, lease_until = NULL, finished_at = ?"
                    " WHERE pk = ? AND lease_owner = ?"
                ),
                (
                    status,
                    next_attempt_at,
                    None if status == "pending" else now,
                    pk,
                    owner,
                ),
            )

    def release_claims(self, owner: str) -> int:
        """Give back every lease ``owner`` holds (graceful shutdown)."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE events SET lease_owner = NULL, lease_until = NULL"
                    " WHERE lease_owner = ? RETURNING pk"
                ),
                (owner,),
            )
            return len(cursor.fetchall())

    # -- handler outcomes ------------------------------------------------

    def handler_runs(self, pk: int) -> dict[str, HandlerRun]:
        """Return each handler's latest outcome for an event, by name."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT handler, status, attempts, last_error, next_attempt_at,"
                    " duration_ms, updated_at FROM handler_runs WHERE event_pk = ?"
                ),
                (pk,),
            )
            rows = cursor.fetchall()
        return {row[0]: HandlerRun(*row) for row in rows}

    def record_attempt(
        self,
        pk: int,
        handler: str,
        *,
        attempt: int,
        status: str,
        error: str | None,
        duration_ms: float,
        now: float,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record one try of a handler and its resulting state.

        :param status: ``ok``, ``retrying`` (due again at
            ``next_attempt_at``) or ``dead``.
        """
        record = AttemptRecord(
            handler, attempt, status, error, duration_ms, now, next_attempt_at
        )
        with self._transaction() as cursor:
            self._write_attempt(cursor, pk, record)

    def _write_attempt(self, cursor: Cursor, pk: int, record: AttemptRecord) -> None:
        if record.status not in RUN_STATUSES:
            raise ValueError(f"unknown handler status {record.status!r}")
        cursor.execute(
            self._sql(
                "INSERT INTO handler_attempts (event_pk, handler, attempt, status,"
                " error, duration_ms, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                pk,
                record.handler,
                record.attempt,
                record.status,
                record.error,
                record.duration_ms,
                record.now,
            ),
        )
        cursor.execute(
            self._sql(
                "INSERT INTO handler_runs (event_pk, handler, status, attempts,"
                " last_error, next_attempt_at, duration_ms, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (event_pk, handler) DO UPDATE SET"
                " status = excluded.status, attempts = excluded.attempts,"
                " last_error = excluded.last_error,"
                " next_attempt_at = excluded.next_attempt_at,"
                " duration_ms = excluded.duration_ms,"
                " updated_at = excluded.updated_at"
            ),
            (
                pk,
                record.handler,
                record.status,
                record.attempt,
                record.error,
                record.next_attempt_at,
                record.duration_ms,
                record.now,
            ),
        )

    def attempts(self, pk: int) -> list[Attempt]:
        """Every recorded try of every handler for an event, oldest first."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT handler, attempt, status, error, duration_ms, at"
                    " FROM handler_attempts WHERE event_pk = ? ORDER BY at, attempt"
                ),
                (pk,),
            )
            return [Attempt(*row) for row in cursor.fetchall()]

    # -- reading ---------------------------------------------------------

    def get_event(self, pk: int) -> StoredEvent | None:
        """Return the event with this store key, or None."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(f"SELECT {_EVENT_COLUMNS} FROM events WHERE pk = ?"), (pk,)
            )
            row = cursor.fetchone()
        return _stored_event(row) if row else None

    def find_event(
        self, event_id: str, source: str | None = None
    ) -> StoredEvent | None:
        """Return the newest event with this id (in ``source`` if given)."""
        query = f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?"
        params: list[Any] = [event_id]
        if source:
            query += " AND source = ?"
            params.append(source)
        with self._transaction() as cursor:
            cursor.execute(self._sql(query + " ORDER BY pk DESC LIMIT 1"), params)
            row = cursor.fetchone()
        return _stored_event(row) if row else None

    def list_events(
        self,
        *,
        source: str | None = None,
        type_prefix: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_pk: int | None = None,
        limit: int = 50,
        duplicated: bool = False,
    ) -> list[StoredEvent]:
        """Return events newest first, filtered; page with ``before_pk``.

        ``type_prefix`` is an exact type, or a prefix ending in ``*``.
        ``duplicated`` keeps only events that received at least one
        repeat delivery.
        """
        where, params = _event_filter(
            source=source,
            type_prefix=type_prefix,
            status=status,
            since=since,
            until=until,
            before_pk=before_pk,
            duplicated=duplicated,
        )
        params.append(limit)
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    f"SELECT {_EVENT_COLUMNS} FROM events{where}"
                    " ORDER BY pk DESC LIMIT ?"
                ),
                params,
            )
            return [_stored_event(row) for row in cursor.fetchall()]

    def count_events(
        self,
        *,
        source: str | None = None,
        type_prefix: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        duplicated: bool = False,
    ) -> int:
        """Return how many events match the filters of :meth:`list_events`."""
        where, params = _event_filter(
            source=source,
            type_prefix=type_prefix,
            status=status,
            since=since,
            until=until,
            duplicated=duplicated,
        )
        with self._transaction() as cursor:
            cursor.execute(self._sql(f"SELECT COUNT(*) FROM events{where}"), params)
            return int(cursor.fetchone()[0])

    def dead_letters(self, *, limit: int = 1000) -> list[DeadLetter]:
        """Return dead (event, handler) pairs, oldest first."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT e.pk, e.source, e.event_id, e.type, r.handler, r.attempts,"
                    " r.last_error, r.updated_at FROM handler_runs r"
                    " JOIN events e ON e.pk = r.event_pk WHERE r.status = 'dead'"
                    " ORDER BY r.updated_at, e.pk LIMIT ?"
                ),
                (limit,),
            )
            return [DeadLetter(*row) for row in cursor.fetchall()]

    def backlog(self) -> tuple[int, float | None]:
        """Return (events not yet fully dispatched, oldest one's receipt time)."""
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT COUNT(*), MIN(received_at) FROM events WHERE status = 'pending'"
            )
            count, oldest = cursor.fetchone()
        return int(count), oldest

    def counts_by_status(self) -> dict[str, int]:
        """Return how many events the store holds in each status."""
        with self._transaction() as cursor:
            cursor.execute("SELECT status, COUNT(*) FROM events GROUP BY status")
            return {status: int(count) for status, count in cursor.fetchall()}

    # -- reports (the console, issue 9) -------------------------------------

    def events_per_minute(self, *, since: float) -> list[tuple[int, str, int]]:
        """Count events received since ``since`` per minute and status.

        Returns (minute, status, count) rows, where ``minute`` is the unix
        minute (seconds // 60) of receipt.
        """
        minute = self._minute_of("received_at")
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    f"SELECT {minute}, status, COUNT(*) FROM events"
                    f" WHERE received_at >= ? GROUP BY {minute}, status"
                ),
                (since,),
            )
            return [(int(row[0]), row[1], int(row[2])) for row in cursor.fetchall()]

    def recent_attempts(self, *, since: float, limit: int = 10_000) -> list[Try]:
        """Return up to ``limit`` handler tries since ``since``, newest first."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT a.handler, a.attempt, a.status, a.duration_ms, a.at,"
                    " a.at - e.received_at FROM handler_attempts a"
                    " JOIN events e ON e.pk = a.event_pk WHERE a.at >= ?"
                    " ORDER BY a.at DESC LIMIT ?"
                ),
                (since, limit),
            )
            return [
                Try(
                    row[0],
                    int(row[1]),
                    row[2],
                    float(row[3]),
                    float(row[4]),
                    float(row[5]),
                )
                for row in cursor.fetchall()
            ]

    def dead_letter_counts(self) -> dict[str, int]:
        """Return how many dead letters each handler has."""
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT handler, COUNT(*) FROM handler_runs WHERE status = 'dead'"
                " GROUP BY handler"
            )
            return {handler: int(count) for handler, count in cursor.fetchall()}

    def _minute_of(self, column: str) -> str:
        return f"CAST({column} / 60 AS INTEGER)"

    # -- replay and retention ----------------------------------------------

    def requeue(
        self,
        pks: Iterable[int],
        *,
        now: float,
        handlers: Sequence[str] | None = None,
        include_succeeded: bool = False,
    ) -> int:
        """Make events due again for their unfinished or chosen handlers.

        Dead handlers get fresh retries. Handlers that succeeded run again
        only with ``include_succeeded``. ``handlers`` limits the reset to
        those names. Returns how many events were queued.
        """
        statuses = ["dead", "retrying"] + (["ok"] if include_succeeded else [])
        queued = 0
        with self._transaction() as cursor:
            for pk in pks:
                query = (
                    "DELETE FROM handler_runs WHERE event_pk = ? AND status IN (?, ?"
                )
                query += ", ?)" if include_succeeded else ")"
                params: list[Any] = [pk, *statuses]
                if handlers:
                    query += " AND handler IN (" + ", ".join("?" * len(handlers)) + ")"
                    params.extend(handlers)
                cursor.execute(self._sql(query), params)
                cursor.execute(
                    self._sql(
                        "UPDATE events SET status = 'pending', next_attempt_at = ?,"
                        " finished_at = NULL WHERE pk = ? RETURNING pk"
                    ),
                    (now, pk),
                )
                queued += len(cursor.fetchall())
        return queued

    def dead_letter_pks(self) -> list[int]:
        """Return the store keys of events with at least one dead handler."""
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT DISTINCT event_pk FROM handler_runs WHERE status = 'dead'"
                " ORDER BY event_pk"
            )
            return [int(row[0]) for row in cursor.fetchall()]

    def purge_dead_letters(self, pks: Sequence[int] | None = None) -> int:
        """Forget dead letters (all, or of the given events) without replay.

        The events become ``done``; returns how many pairs were purged.
        """
        with self._transaction() as cursor:
            query = "DELETE FROM handler_runs WHERE status = 'dead'"
            params: list[Any] = []
            if pks is not None:
                if not pks:
                    return 0
                query += " AND event_pk IN (" + ", ".join("?" * len(pks)) + ")"
                params.extend(pks)
            cursor.execute(self._sql(query + " RETURNING event_pk"), params)
            touched = {row[0] for row in cursor.fetchall()}
            for pk in touched:
                cursor.execute(
                    self._sql(
                        "UPDATE events SET status = 'done' WHERE pk = ?"
                        " AND status = 'dead'"
                    ),
                    (pk,),
                )
        return len(touched)

    def prune(self, *, older_than: float) -> int:
        """Delete fully dispatched events received before ``older_than``.

        Pending events and events with dead letters are kept, so nothing
        unprocessed is lost. Returns how many events were deleted.
        """
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "DELETE FROM events WHERE status = 'done' AND received_at < ?"
                    " RETURNING pk"
                ),
                (older_than,),
            )
            return len(cursor.fetchall())

    # -- message status tracking (CONTRACT.md section 7) -------------------

    def record_message_status(
        self,
        message_id: str,
        *,
        status: str,
        rank: int,
        status_at: float | None,
        event_id: str | None,
        error: str | None,
        now: float,
    ) -> bool:
        """Add a status to a message's history; advance it if ``rank`` is higher.

        Returns True when the message's current status changed. A status
        of lower or equal rank is kept in the history only, so the current
        status never moves backwards.
        """
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "INSERT INTO message_history (message_id, status, status_at,"
                    " event_id, error, recorded_at) VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (message_id, status, status_at, event_id, error, now),
            )
            cursor.execute(
                self._sql(
                    "INSERT INTO messages (message_id, status, rank, status_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (message_id) DO UPDATE SET status = excluded.status,"
                    " rank = excluded.rank, status_at = excluded.status_at,"
                    " updated_at = excluded.updated_at"
                    " WHERE excluded.rank > messages.rank RETURNING message_id"
                ),
                (message_id, status, rank, status_at, now),
            )
            return cursor.fetchone() is not None

    def message_status(self, message_id: str) -> str | None:
        """Return a message's current status, or None if unknown."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("SELECT status FROM messages WHERE message_id = ?"),
                (message_id,),
            )
            row = cursor.fetchone()
        return row[0] if row else None

    def message_history(self, message_id: str) -> list[MessageUpdate]:
        """Return every status recorded for a message, in arrival order."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT message_id, status, status_at, event_id, error, recorded_at"
                    " FROM message_history WHERE message_id = ?"
                    " ORDER BY recorded_at"
                ),
                (message_id,),
            )
            return [MessageUpdate(*row) for row in cursor.fetchall()]

    def message_counts(self) -> dict[str, int]:
        """Return how many messages are currently in each status."""
        with self._transaction() as cursor:
            cursor.execute("SELECT status, COUNT(*) FROM messages GROUP BY status")
            return {status: int(count) for status, count in cursor.fetchall()}


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


def _stored_event(row: Sequence[Any]) -> StoredEvent:
    (
        pk,
        source,
        event_id,
        type_,
        received_at,
        payload,
        headers,
        status,
        key_id,
        duplicates,
        last_duplicate_at,
    ) = row
    event = Event(
        id=event_id,
        type=type_,
        source=source,
        received_at=datetime.fromtimestamp(received_at, tz=UTC),
        payload=json.loads(payload),
        headers=json.loads(headers),
    )
    return StoredEvent(
        pk=int(pk),
        event=event,
        status=status,
        key_id=key_id,
        duplicates=int(duplicates),
        last_duplicate_at=last_duplicate_at,
    )


def _event_filter(
    *,
    source: str | None,
    type_prefix: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    before_pk: int | None = None,
    duplicated: bool = False,
) -> tuple[str, list[Any]]:
    """Return the WHERE clause and parameters shared by event queries."""
    # Written exactly as the partial index's condition, so it is used.
    clauses: list[str] = ["duplicates > 0"] if duplicated else []
    params: list[Any] = []
    for clause, value in (
        ("source = ?", source),
        ("status = ?", status),
        ("received_at >= ?", since),
        ("received_at < ?", until),
        ("pk < ?", before_pk),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if type_prefix:
        if type_prefix.endswith("*"):
            clauses.append("substr(type, 1, ?) = ?")
            params.extend([len(type_prefix) - 1, type_prefix[:-1]])
        else:
            clauses.append("type = ?")
            params.append(type_prefix)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return where, params


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
