"""The base the store's query groups are written against.

:class:`StoreBase` declares what every group of queries (the mixins in
:mod:`gateway.store_inbox`, :mod:`gateway.store_outcomes`,
:mod:`gateway.store_reads`, :mod:`gateway.store_replay` and
:mod:`gateway.store_messages`) uses of a back-end: a transaction
yielding a cursor, the translation of ``?`` placeholders, and writing a
handler's try inside an open transaction. It also holds the events
columns those queries select and the mapping of such a row to a
:class:`~gateway.store_types.StoredEvent`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from .events import Event
from .store_types import AttemptRecord, Cursor, StoredEvent

EVENT_COLUMNS = (
    "pk, source, event_id, type, received_at, payload, headers, status, key_id,"
    " duplicates, last_duplicate_at"
)


class StoreBase(ABC):
    """What the query mixins need of a back-end; see :class:`Store`."""

    kind: str = ""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Cursor]:
        """Return a context manager yielding a cursor inside one transaction."""

    def _sql(self, statement: str) -> str:
        return statement

    @abstractmethod
    def _write_attempt(self, cursor: Cursor, pk: int, record: AttemptRecord) -> None:
        """Record one handler try inside the caller's open transaction."""


def stored_event(row: Sequence[Any]) -> StoredEvent:
    """Build the record of an events row selected as ``EVENT_COLUMNS``."""
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
