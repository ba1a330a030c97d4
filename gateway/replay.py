"""Replay and retention: make stored events due again, prune old ones.

Used by the command-line tool and available to operators' scripts. A
replay queues events in the store; the dispatchers of the running
gateway (or :meth:`Dispatcher.run_until_idle`) then run the handlers.
Handlers that already succeeded are not run again unless asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .store import Store

DAY_SECONDS = 86_400
REPLAY_BATCH = 500

Progress = Callable[[int], None]


def replay_event(
    store: Store,
    pk: int,
    *,
    handlers: Sequence[str] | None = None,
    include_succeeded: bool = False,
    now: float | None = None,
) -> int:
    """Queue one event again; return 1 if it exists, else 0."""
    return store.requeue(
        [pk],
        now=time.time() if now is None else now,
        handlers=handlers,
        include_succeeded=include_succeeded,
    )


def replay_dead_letters(
    store: Store,
    *,
    handlers: Sequence[str] | None = None,
    now: float | None = None,
    progress: Progress | None = None,
    batch_size: int = REPLAY_BATCH,
) -> int:
    """Give every dead (event, handler) pair fresh retries; return events queued.

    Events are queued ``batch_size`` at a time, one transaction each;
    ``progress`` is called with the number of events of each batch.
    """
    pks = store.dead_letter_pks()
    moment = time.time() if now is None else now
    queued = 0
    for start in range(0, len(pks), batch_size):
        batch = pks[start : start + batch_size]
        queued += store.requeue(batch, now=moment, handlers=handlers)
        if progress is not None:
            progress(len(batch))
    return queued


def replay_range(
    store: Store,
    *,
    since: float,
    until: float,
    source: str | None = None,
    handlers: Sequence[str] | None = None,
    include_succeeded: bool = False,
    now: float | None = None,
    page_size: int = REPLAY_BATCH,
    progress: Progress | None = None,
) -> int:
    """Queue every event received in [since, until); return events queued.

    ``progress`` is called with the number of events of each page.
    """
    queued = 0
    before: int | None = None
    moment = time.time() if now is None else now
    while True:
        page = store.list_events(
            source=source, since=since, until=until, before_pk=before, limit=page_size
        )
        if not page:
            return queued
        queued += store.requeue(
            [stored.pk for stored in page],
            now=moment,
            handlers=handlers,
            include_succeeded=include_succeeded,
        )
        before = page[-1].pk
        if progress is not None:
            progress(len(page))


def prune(store: Store, *, retention_days: float, now: float | None = None) -> int:
    """Delete fully handled events older than ``retention_days``.

    Pending events and events with dead letters are kept until they are
    replayed or purged. Returns how many events were deleted. Each
    gateway's dispatcher already does this hourly with
    ``GATEWAY_RETENTION_DAYS`` (``Settings.retention_days``); call it to
    prune at another time.
    """
    moment = time.time() if now is None else now
    return store.prune(older_than=moment - retention_days * DAY_SECONDS)
