"""The records the event store returns and the statuses it knows.

Frozen dataclasses for what the queries of :class:`gateway.store.Store`
hand back (stored events, handler outcomes and tries, dead letters,
message status changes), the event and handler statuses, and the
:class:`Cursor` protocol the queries are written against. Plain Python:
no database driver is imported here. Callers import these names from
:mod:`gateway.store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .events import Event

EVENT_STATUSES = ("pending", "done", "dead")
RUN_STATUSES = ("ok", "retrying", "dead")


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
