"""The store's read side: finding, listing and counting events, reports.

:class:`ReadQueries` serves the command-line interface, the console and
the metrics: events by key, id or filters, dead letters, the backlog,
and the per-minute and per-handler figures of the console's reports.
"""

from __future__ import annotations

from typing import Any

from .store_base import EVENT_COLUMNS, StoreBase, stored_event
from .store_types import DeadLetter, StoredEvent, Try


class ReadQueries(StoreBase):
    """Looking events up, counting them and reporting on them."""

    def get_event(self, pk: int) -> StoredEvent | None:
        """Return the event with this store key, or None."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(f"SELECT {EVENT_COLUMNS} FROM events WHERE pk = ?"), (pk,)
            )
            row = cursor.fetchone()
        return stored_event(row) if row else None

    def find_event(
        self, event_id: str, source: str | None = None
    ) -> StoredEvent | None:
        """Return the newest event with this id (in ``source`` if given)."""
        query = f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?"
        params: list[Any] = [event_id]
        if source:
            query += " AND source = ?"
            params.append(source)
        with self._transaction() as cursor:
            cursor.execute(self._sql(query + " ORDER BY pk DESC LIMIT 1"), params)
            row = cursor.fetchone()
        return stored_event(row) if row else None

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
                    f"SELECT {EVENT_COLUMNS} FROM events{where}"
                    " ORDER BY pk DESC LIMIT ?"
                ),
                params,
            )
            return [stored_event(row) for row in cursor.fetchall()]

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
