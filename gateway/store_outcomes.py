"""The store's record of handler outcomes: runs and tries.

:class:`OutcomeQueries` keeps each handler's latest outcome for an event
(``handler_runs``) and every try (``handler_attempts``).
"""

from __future__ import annotations

from .store_base import StoreBase
from .store_types import RUN_STATUSES, Attempt, AttemptRecord, Cursor, HandlerRun


class OutcomeQueries(StoreBase):
    """Recording and reading what each handler did with each event."""

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
