"""Backpressure: refuse new deliveries while the inbox backlog is too deep.

When more events wait for dispatch than ``GATEWAY_BACKLOG_HIGH_WATER``,
or the oldest waiting event is older than
``GATEWAY_BACKLOG_MAX_AGE_SECONDS``, new deliveries are answered 503
``unavailable`` with ``Retry-After``: providers hold their retries and
send again later, instead of the gateway accepting work it cannot finish
in time. Nothing already accepted is dropped; the dispatchers keep
draining the backlog. Both marks are off at 0.

The backlog is read from the store at most once per ``cache_seconds`` per
process, so the check adds no query to most requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .counters import BACKPRESSURE_REFUSALS
from .errors import StoreError, Unavailable
from .store import Store

logger = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class BacklogState:
    """The backlog as last read, and why it is too deep (None when not)."""

    pending: int
    oldest_age_seconds: float | None
    reason: str | None = None
    kind: str | None = None


class Backpressure:
    """Decides from the store's backlog whether to take new deliveries.

    Thread-safe; one instance per app.
    """

    def __init__(
        self,
        store: Store,
        *,
        high_water: int = 0,
        max_age_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
    ):
        self.store = store
        self.high_water = high_water
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._state: BacklogState | None = None
        self._read_at = 0.0

    @property
    def enabled(self) -> bool:
        """Whether either mark is set."""
        return self.high_water > 0 or self.max_age_seconds > 0

    def state(self) -> BacklogState | None:
        """Return the (cached) backlog state; None when off or unreadable.

        A store that cannot be read gives None: the delivery then meets
        the store's own failure, answered 503 when it cannot be stored.
        """
        if not self.enabled:
            return None
        now = self.clock()
        with self._lock:
            if self._state is not None and now - self._read_at < self.cache_seconds:
                return self._state
        try:
            pending, oldest = self.store.backlog()
        except StoreError:
            logger.debug("backlog could not be read", exc_info=True)
            return None
        state = self._judge(pending, oldest, now)
        with self._lock:
            self._state, self._read_at = state, now
        return state

    def check(self) -> None:
        """Raise :class:`Unavailable` when the backlog is over a mark."""
        state = self.state()
        if state is None or state.reason is None:
            return
        BACKPRESSURE_REFUSALS.labels(state.kind or "backlog").inc()
        raise Unavailable(
            "The gateway is catching up with its backlog; retry after the delay given.",
            detail=f"backpressure: {state.reason}",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )

    def _judge(self, pending: int, oldest: float | None, now: float) -> BacklogState:
        age = None if oldest is None else max(0.0, now - float(oldest))
        if self.high_water > 0 and pending > self.high_water:
            reason = f"{pending} events pending, over the high-water mark of "
            reason += f"{self.high_water}"
            return BacklogState(pending, age, reason, "high_water")
        if self.max_age_seconds > 0 and age is not None and age > self.max_age_seconds:
            reason = f"oldest pending event is {age:.0f} s old, over the limit of "
            reason += f"{self.max_age_seconds:.0f} s"
            return BacklogState(pending, age, reason, "max_age")
        return BacklogState(pending, age)
