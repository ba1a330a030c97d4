"""Dispatch of stored events to their handlers: retries and dead letters.

The :class:`Dispatcher` runs in a background thread of each worker
process. It claims stored events from the store with a lease, calls every
matching handler on its own (one handler's failure never stops another),
records each outcome, retries failed handlers with exponential backoff
and jitter, and dead-letters a handler after its last retry
(CONTRACT.md section 3). Handlers run at least once: a worker that dies
mid-dispatch leaves a lease that expires, and the event is claimed again.
A per-handler :class:`~gateway.breaker.CircuitBreaker` pauses a handler
that keeps failing or running past its time budget; its events wait.

Registration (signals, ``on``, handler names, loading) lives in
:mod:`gateway.signals`; its public names are re-exported here.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .breaker import CircuitBreaker
from .counters import HANDLER_OVER_BUDGET, HANDLER_PAUSED_EVENTS
from .errors import StoreError
from .replay import prune
from .signals import Binding as Binding
from .signals import GatewaySignal as GatewaySignal
from .signals import handler_name as handler_name
from .signals import handler_table as handler_table
from .signals import handlers_by_pattern as handlers_by_pattern
from .signals import iter_signals as iter_signals
from .signals import load_handlers as load_handlers
from .signals import matching_handlers as matching_handlers
from .signals import on as on
from .signals import receiver_count as receiver_count
from .signals import signal as signal
from .store import AttemptRecord, HandlerRun, Store, StoredEvent

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000
CLAIM_BATCH = 20
PRUNE_INTERVAL_SECONDS = 3600.0
current_store: contextvars.ContextVar[Store | None] = contextvars.ContextVar(
    "current_store", default=None
)


class DoNotRetry(Exception):
    """Raised by a handler whose failure no retry can fix.

    The (event, handler) pair goes straight to the dead letters.
    """


def backoff_seconds(attempt: int, base_seconds: float, *, jitter: float = 0.2) -> float:
    """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1).

    With the default base of 2 s the delays are about 2, 4, 8 s; each is
    spread by up to ``jitter`` (a fraction) either way so that retries of
    a burst do not arrive together.
    """
    delay = base_seconds * float(2 ** (attempt - 1))
    return max(0.0, delay * (1.0 + random.uniform(-jitter, jitter)))


@dataclass(frozen=True)
class HandlerOutcome:
    """What one handler did with one event in one dispatch."""

    handler: str
    status: str
    attempt: int
    duration_ms: float
    error: str | None = None


class Dispatcher:
    """Claims stored events and runs their handlers, in one worker process.

    ``run_once`` does one pass synchronously (tests and the CLI use it);
    ``start`` runs passes in a daemon thread, woken by :meth:`wake` after
    each stored delivery and otherwise every ``poll_interval_seconds``.
    Callbacks in ``observers`` receive each :class:`HandlerOutcome` with
    its event, for metrics and live tails. With ``retention_days`` above
    zero the thread also prunes fully handled events older than that,
    once every ``prune_interval_seconds``.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_retries: int = 3,
        retry_base_seconds: float = 2.0,
        lease_seconds: float = 60.0,
        poll_interval_seconds: float = 1.0,
        handler_time_budget_seconds: float = 10.0,
        retention_days: float = 0.0,
        prune_interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
        breaker: CircuitBreaker | None = None,
    ):
        self.store = store
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self.max_retries = max_retries
        self.retry_base_seconds = retry_base_seconds
        self.lease_seconds = lease_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.handler_time_budget_seconds = handler_time_budget_seconds
        self.retention_days = retention_days
        self.prune_interval_seconds = prune_interval_seconds
        self.last_prune_at: float | None = None
        self.clock = clock
        self.observers: list[Callable[[StoredEvent, HandlerOutcome], None]] = []
        self.owner = _owner_name()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.last_pass_at: float | None = None

    # -- lifecycle -----------------------------------------------------

    def start(self) -> None:
        """Start the background thread in this process if not running.

        Safe to call often and after a fork: a child process gets its own
        thread and owner name.
        """
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self.owner = _owner_name()
                self._thread = None
                self._stopping = threading.Event()
                self._wakeup = threading.Event()
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._loop, name="gateway-dispatcher", daemon=True
            )
            self._thread.start()

    def is_running(self) -> bool:
        """Whether the background thread of this process is alive."""
        return (
            self._pid == os.getpid()
            and self._thread is not None
            and self._thread.is_alive()
        )

    def wake(self) -> None:
        """Ask the background thread for a pass now (a delivery was stored)."""
        self._wakeup.set()

    def stop(self, timeout_seconds: float = 20.0) -> None:
        """Stop claiming, finish the handler under way, release leases.

        Events claimed but not started are released at once, so another
        worker can take them without waiting for the lease to expire.
        """
        self._stopping.set()
        self._wakeup.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout_seconds)
        try:
            released = self.store.release_claims(self.owner)
        except StoreError:
            logger.warning("releasing claims at shutdown failed", exc_info=True)
        else:
            if released:
                logger.info("released claims at shutdown", extra={"count": released})

    # -- work ------------------------------------------------------------

    def run_once(self, *, limit: int = CLAIM_BATCH) -> int:
        """Claim due events and dispatch them; return how many were handled."""
        now = self.clock()
        self.last_pass_at = now
        claimed = self.store.claim_due(
            self.owner, now=now, lease_seconds=self.lease_seconds, limit=limit
        )
        handled = 0
        for index, stored in enumerate(claimed):
            if self._stopping.is_set():
                # Give back what we will not start, so nothing waits a lease.
                for rest in claimed[index:]:
                    self._release(rest)
                break
            self.dispatch(stored, claimed_at=now)
            handled += 1
        return handled

    def prune_if_due(self) -> int:
        """Prune old handled events if retention is on and the interval passed.

        Pending and dead-lettered events are never pruned. Returns how many
        events were deleted.
        """
        now = self.clock()
        if self.retention_days <= 0 or (
            self.last_prune_at is not None
            and now - self.last_prune_at < self.prune_interval_seconds
        ):
            return 0
        self.last_prune_at = now
        deleted = prune(self.store, retention_days=self.retention_days, now=now)
        if deleted:
            logger.info("pruned handled events", extra={"count": deleted})
        return deleted

    def run_until_idle(self, *, max_passes: int = 1000) -> int:
        """Run passes until nothing is due; return events handled (tests)."""
        total = 0
        for _ in range(max_passes):
            handled = self.run_once()
            total += handled
            if not handled:
                break
        return total

    def dispatch(
        self, stored: StoredEvent, *, claimed_at: float | None = None
    ) -> list[HandlerOutcome]:
        """Run every matching, unfinished handler of a claimed event.

        Records each outcome, then releases the claim with the event's new
        status: ``done``, ``dead`` (some handler dead-lettered) or
        ``pending`` until the earliest retry. The lease, taken at
        ``claimed_at`` (default: now), is renewed between handlers once
        half of it has passed; if another worker has taken the event
        meanwhile, the remaining handlers are left to that worker. The
        last handler's outcome is written in the transaction that
        releases the claim, so an event with one handler costs one
        commit; each earlier outcome is written before the next handler
        starts.
        """
        event = stored.event
        bindings = matching_handlers(event.source, event.type)
        runs = self.store.handler_runs(stored.pk)
        outcomes: list[HandlerOutcome] = []
        if not bindings:
            logger.warning(
                "no handler for event",
                extra={
                    "source": event.source,
                    "event_id": event.id,
                    "event_type": event.type,
                },
            )
        # Counted from the claim, not from this event's start: the last
        # event of a claimed batch may wait a while behind the others.
        renewed_at = self.clock() if claimed_at is None else claimed_at
        unwritten: tuple[AttemptRecord, HandlerOutcome] | None = None
        token = current_store.set(self.store)
        paused: dict[str, float] = {}
        try:
            for binding in bindings:
                run = runs.get(binding.name)
                if not _is_due(run, self.clock()):
                    continue
                if self._stopping.is_set():
                    break
                if not self.breaker.allow(binding.name):
                    # Paused: the event waits for this handler without an
                    # attempt being recorded, so nothing is dead-lettered.
                    resume = self.breaker.resume_at(binding.name)
                    paused[binding.name] = resume or self.clock()
                    HANDLER_PAUSED_EVENTS.labels(binding.name).inc()
                    continue
                if unwritten is not None:
                    self._write(stored, *unwritten)
                    unwritten = None
                if self.clock() - renewed_at > self.lease_seconds / 2:
                    renewed_at = self.clock()
                    if not self.store.extend_claim(
                        stored.pk, self.owner, renewed_at + self.lease_seconds
                    ):
                        logger.warning(
                            "lease lost; another worker dispatches the event",
                            extra={"source": event.source, "event_id": event.id},
                        )
                        return outcomes
                record, outcome = self._run_handler(stored, binding, run)
                runs[binding.name] = HandlerRun(
                    binding.name,
                    record.status,
                    record.attempt,
                    record.error,
                    record.next_attempt_at,
                    record.duration_ms,
                    record.now,
                )
                outcomes.append(outcome)
                unwritten = (record, outcome)
        finally:
            current_store.reset(token)
        self._finish(stored, bindings, runs, unwritten, paused)
        return outcomes

    def _run_handler(
        self, stored: StoredEvent, binding: Binding, run: HandlerRun | None
    ) -> tuple[AttemptRecord, HandlerOutcome]:
        attempt = (run.attempts if run and run.status == "retrying" else 0) + 1
        event = dataclasses.replace(stored.event, attempt=attempt)
        fields = {
            "source": event.source,
            "event_id": event.id,
            "event_type": event.type,
            "handler": binding.name,
            "attempt": attempt,
        }
        started = time.perf_counter()
        error: str | None = None
        failure: BaseException | None = None
        retry = True
        try:
            binding.receiver(event.source, event=event)
        except DoNotRetry as err:
            error, failure, retry = _describe(err), err, False
        # SystemExit counts too: a handler calling sys.exit() must not end
        # the dispatcher thread and leave its event stuck.
        except (
            Exception,
            SystemExit,
        ) as err:  # one handler's failure must not stop the others
            error, failure = _describe(err), err
        duration_ms = (time.perf_counter() - started) * 1000
        now = self.clock()
        next_attempt_at: float | None = None
        if error is None:
            status = "ok"
        elif retry and attempt <= self.max_retries:
            status = "retrying"
            next_attempt_at = now + backoff_seconds(attempt, self.retry_base_seconds)
        else:
            status = "dead"
        record = AttemptRecord(
            binding.name, attempt, status, error, duration_ms, now, next_attempt_at
        )
        fields["duration_ms"] = round(duration_ms, 3)
        fields["status"] = status
        if status == "ok":
            logger.info("handler succeeded", extra=fields)
        elif status == "retrying":
            # The traceback is logged once, with the last failure.
            logger.warning(
                "handler failed, retry scheduled", extra={**fields, "error": error}
            )
        else:
            logger.error(
                "handler failed, dead-lettered", extra=fields, exc_info=failure
            )
        over_budget = duration_ms > self.handler_time_budget_seconds * 1000
        if over_budget:
            HANDLER_OVER_BUDGET.labels(binding.name).inc()
            logger.warning("handler ran past its time budget", extra=fields)
        # DoNotRetry is a verdict on one event, not on the handler's health.
        if over_budget or (error is not None and retry):
            self.breaker.record_failure(binding.name)
        else:
            self.breaker.record_success(binding.name)
        outcome = HandlerOutcome(binding.name, status, attempt, duration_ms, error)
        return record, outcome

    def _write(
        self, stored: StoredEvent, record: AttemptRecord, outcome: HandlerOutcome
    ) -> None:
        self.store.record_attempt(
            stored.pk,
            record.handler,
            attempt=record.attempt,
            status=record.status,
            error=record.error,
            duration_ms=record.duration_ms,
            now=record.now,
            next_attempt_at=record.next_attempt_at,
        )
        self._notify(stored, outcome)

    def _notify(self, stored: StoredEvent, outcome: HandlerOutcome) -> None:
        for observer in self.observers:
            try:
                observer(stored, outcome)
            except Exception:  # an observer must not break dispatch
                logger.exception("dispatch observer failed")

    def _finish(
        self,
        stored: StoredEvent,
        bindings: list[Binding],
        runs: dict[str, HandlerRun],
        unwritten: tuple[AttemptRecord, HandlerOutcome] | None,
        paused: dict[str, float] | None = None,
    ) -> None:
        now = self.clock()
        paused = paused or {}
        pending_times: list[float] = []
        for binding in bindings:
            run = runs.get(binding.name)
            # A paused handler's event is due when its breaker allows a probe.
            resume = paused.get(binding.name, now)
            if run is None:
                # Not run in this pass (stopping, or paused): due now or later.
                pending_times.append(max(now, resume))
            elif run.status == "retrying":
                pending_times.append(max(run.next_attempt_at or now, resume))
        if pending_times:
            status, due = "pending", min(pending_times)
        elif any(run.status == "dead" for run in runs.values()):
            status, due = "dead", now
        else:
            status, due = "done", now
        self.store.finish_claim(
            stored.pk,
            self.owner,
            status=status,
            next_attempt_at=due,
            now=now,
            record=unwritten[0] if unwritten else None,
        )
        if unwritten is not None:
            self._notify(stored, unwritten[1])

    def _release(self, stored: StoredEvent) -> None:
        self.store.finish_claim(
            stored.pk,
            self.owner,
            status="pending",
            next_attempt_at=self.clock(),
            now=self.clock(),
        )

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                handled = self.run_once()
                self.prune_if_due()
            except StoreError:
                logger.error("dispatcher pass failed; will retry", exc_info=True)
                handled = 0
            except (Exception, SystemExit):  # the thread must survive any pass
                logger.exception("dispatcher pass failed unexpectedly")
                handled = 0
            if handled:
                continue
            self._wakeup.wait(self.poll_interval_seconds)
            self._wakeup.clear()


def _is_due(run: HandlerRun | None, now: float) -> bool:
    if run is None:
        return True
    if run.status != "retrying":
        return False
    return run.next_attempt_at is None or run.next_attempt_at <= now


def _describe(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text[:MAX_ERROR_CHARS]


def _owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
