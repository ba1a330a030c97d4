"""Message status tracking for the first provider (CONTRACT.md section 7).

A message's current status only moves forward: ``sent`` < ``failed`` <
``delivered`` < ``read``. A late ``delivered`` after ``read`` is kept in
the history but does not change the current status. ``failed`` ranks
below ``delivered`` because proof of delivery outweighs a failure report
that arrives out of order. Every status is kept in the history.

The state lives in the gateway's event store, shared by every worker.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from .dispatch import current_store
from .errors import StoreError
from .store import MessageUpdate, Store

STATUS_RANKS = {"queued": 0, "sent": 1, "failed": 2, "delivered": 3, "read": 4}
TRACKED_TYPES = tuple(
    f"message.{status}" for status in ("sent", "delivered", "read", "failed")
)


def record_status(
    message_id: str,
    status: str,
    *,
    status_at: float | None = None,
    event_id: str | None = None,
    error: str | None = None,
    store: Store | None = None,
    now: float | None = None,
) -> bool:
    """Record a status of a message; return True if its current status moved.

    :param store: where to record; by default the store of the gateway
        that is dispatching the current event.
    :raises ValueError: the status is not one of :data:`STATUS_RANKS`.
    :raises StoreError: no store is available or the write failed.
    """
    if status not in STATUS_RANKS:
        raise ValueError(f"unknown message status {status!r}")
    target = store or current_store.get()
    if target is None:
        raise StoreError("no event store is active to record a message status")
    return target.record_message_status(
        message_id,
        status=status,
        rank=STATUS_RANKS[status],
        status_at=status_at,
        event_id=event_id,
        error=error,
        now=time.time() if now is None else now,
    )


def history(store: Store, message_id: str) -> list[MessageUpdate]:
    """Return a message's recorded statuses in arrival order."""
    return store.message_history(message_id)


def delivery_figures(store: Store) -> dict[str, float]:
    """Return counts per current status and shares of sent messages.

    ``delivered_ratio`` counts messages delivered or read;
    ``read_ratio`` those read; ``failed_ratio`` those failed; each over
    all tracked messages (every tracked message was sent).
    """
    counts = store.message_counts()
    total = sum(counts.values())
    figures: dict[str, float] = {
        status: float(counts.get(status, 0)) for status in STATUS_RANKS
    }
    figures["total"] = float(total)

    def share(value: int) -> float:
        return value / total if total else 0.0

    figures["delivered_ratio"] = share(
        counts.get("delivered", 0) + counts.get("read", 0)
    )
    figures["read_ratio"] = share(counts.get("read", 0))
    figures["failed_ratio"] = share(counts.get("failed", 0))
    return figures


def parse_timestamp(value: Any) -> float | None:
    """Read a provider timestamp (unix seconds or ISO 8601) as unix seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            moment = float(value)
        except OverflowError:
            return None
        return moment if math.isfinite(moment) else None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            moment = float(text)
        except ValueError:
            pass
        else:
            return moment if math.isfinite(moment) else None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            return None
    return None
