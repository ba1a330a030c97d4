"""The store's inbox: durable inserts with group commit, and claims.

:class:`InboxQueries` stores each delivery's event once per (source,
event id), counting repeats on the stored event, and commits concurrent
inserts of one process together; dispatchers lease due events from it
(:meth:`~InboxQueries.claim_due`) and release them with their outcome.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from .errors import StoreError
from .events import Event
from .store_base import EVENT_COLUMNS, StoreBase, stored_event
from .store_types import EVENT_STATUSES, AttemptRecord, StoredEvent

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


class InboxQueries(StoreBase):
    """Inserting events and leasing them to dispatchers."""

    _claim_suffix = ""

    def __init__(self) -> None:
        # Group commit of inserts (see insert_event): the queue of rows
        # waiting and the lock held by the thread committing a batch.
        self._pending: list[_PendingInsert] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()

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
                    f" RETURNING {EVENT_COLUMNS}"
                ),
                (owner, now + lease_seconds, now, now, limit),
            )
            rows = cursor.fetchall()
        return sorted((stored_event(row) for row in rows), key=lambda item: item.pk)

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


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
