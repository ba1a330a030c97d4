"""The store's outbound message statuses (CONTRACT.md section 7).

:class:`MessageQueries` keeps each message's current status, which only
moves forward in rank, and the history of every status reported.
"""

from __future__ import annotations

from .store_base import StoreBase
from .store_types import MessageUpdate


class MessageQueries(StoreBase):
    """Recording and reading the statuses of outbound messages."""

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
