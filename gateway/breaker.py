"""A circuit breaker per handler, so one broken plugin cannot hog dispatch.

States, per handler name:

- closed: the handler runs; consecutive failures are counted.
- open: after ``failure_threshold`` consecutive failures the handler is
  paused for ``cooldown_seconds``. Its events wait in the inbox: the
  dispatcher skips it, records no attempt and dead-letters nothing.
- half-open: once the cool-down has passed, exactly one call (the probe)
  is let through. Success closes the breaker; failure opens it again for
  another cool-down.

What counts as a failure: the handler raised (other than ``DoNotRetry``,
which is a verdict on one event, not on the handler's health), or it ran
past the handler time budget. A slow run still counts as a success for
its event (it is not retried), but it moves the breaker like a failure,
because a handler that keeps timing out starves the others just as one
that keeps failing does.

The state lives in memory in one process: each gunicorn worker has its
own breakers and learns on its own that a handler is broken. It is lost
on restart, when every handler starts closed again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .counters import HANDLER_BREAKER_OPEN, HANDLER_BREAKER_OPENED

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@dataclass
class _State:
    status: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probe_started: bool = False


class CircuitBreaker:
    """Per-handler breakers of one dispatcher (one process); thread-safe.

    A ``failure_threshold`` of 0 turns the breaker off: every handler is
    always allowed.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def allow(self, handler: str) -> bool:
        """Whether ``handler`` may run now.

        Returns True for a closed breaker, and once per cool-down for an
        open one (the half-open probe); False while the handler is paused.
        """
        if self.failure_threshold <= 0:
            return True
        with self._lock:
            state = self._states.get(handler)
            if state is None or state.status == CLOSED:
                return True
            if state.status == OPEN:
                if self.clock() < state.opened_at + self.cooldown_seconds:
                    return False
                state.status = HALF_OPEN
                state.probe_started = False
            if state.probe_started:
                return False
            state.probe_started = True
        logger.info("handler probed after pause", extra={"handler": handler})
        return True

    def resume_at(self, handler: str) -> float | None:
        """When a paused handler may be probed (unix seconds); None if not paused."""
        with self._lock:
            state = self._states.get(handler)
            if state is None or state.status == CLOSED:
                return None
            return state.opened_at + self.cooldown_seconds

    def state(self, handler: str) -> str:
        """Return ``closed``, ``open`` or ``half-open`` for a handler."""
        with self._lock:
            state = self._states.get(handler)
            return CLOSED if state is None else state.status

    def record_success(self, handler: str) -> None:
        """Note a healthy run: the failure count restarts, the breaker closes."""
        with self._lock:
            state = self._states.get(handler)
            if state is None:
                return
            reopened = state.status != CLOSED
            self._states.pop(handler)
        if reopened:
            HANDLER_BREAKER_OPEN.labels(handler).set(0)
            logger.info("handler resumed after pause", extra={"handler": handler})

    def record_failure(self, handler: str) -> None:
        """Note a failure (or a run past the time budget) of ``handler``."""
        if self.failure_threshold <= 0:
            return
        with self._lock:
            state = self._states.setdefault(handler, _State())
            state.failures += 1
            trips = state.status == HALF_OPEN or (
                state.status == CLOSED and state.failures >= self.failure_threshold
            )
            if not trips:
                return
            state.status = OPEN
            state.opened_at = self.clock()
            state.probe_started = False
            failures = state.failures
        HANDLER_BREAKER_OPENED.labels(handler).inc()
        HANDLER_BREAKER_OPEN.labels(handler).set(1)
        logger.warning(
            "handler paused by its circuit breaker",
            extra={
                "handler": handler,
                "failures": failures,
                "cooldown_seconds": self.cooldown_seconds,
            },
        )
