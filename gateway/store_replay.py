"""The store's replay and retention: requeueing, purging and pruning.

:class:`ReplayQueries` makes stored events due again for their
handlers, forgets dead letters without replay, and deletes fully
dispatched events past their retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .store_base import StoreBase


class ReplayQueries(StoreBase):
    """Replaying events and deleting what is no longer needed."""

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
