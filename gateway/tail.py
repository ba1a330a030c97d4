"""Follow deliveries, handler outcomes and refusals as they are stored.

The tail polls the store, so it sees what every worker and host sharing
the store does, and needs no connection to a running gateway: point it at
the same ``GATEWAY_DATABASE_URL``. It starts at the newest stored rows
and prints only what comes after.

Rows can be committed slightly out of order by concurrent workers, so
each poll looks back over a short window and skips rows already shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .errors import StoreError
from .refusals import RefusalLog
from .store import Store

# How far back (rows for ids, seconds for handler attempts) each poll looks
# again, for rows committed out of order.
LOOKBACK_ROWS = 200
LOOKBACK_SECONDS = 30.0
PAGE_ROWS = 500
MAX_DETAIL_CHARS = 160


@dataclass
class _Cursor:
    last_id: int = 0
    last_at: float = 0.0


class Tail:
    """Reads what the store gained since the last poll, as text lines."""

    def __init__(self, store: Store, *, color: bool = False):
        self.store = store
        self.refusal_log = RefusalLog(store)
        self.color = color
        self.counts = {"deliveries": 0, "handler runs": 0, "refusals": 0}
        self._events = _Cursor()
        self._refusals = _Cursor()
        self._attempts = _Cursor()
        self._seen_events: set[int] = set()
        self._seen_refusals: set[int] = set()
        self._seen_attempts: set[tuple[int, str, int, float]] = set()

    def start(self) -> None:
        """Create missing tables and skip everything stored so far."""
        self.refusal_log.migrate()
        for cursor, statement in (
            (self._events, "SELECT MAX(pk) FROM events"),
            (self._refusals, "SELECT MAX(id) FROM refusals"),
        ):
            cursor.last_id = int(self.store.execute(statement)[0][0] or 0)
        latest = self.store.execute("SELECT MAX(at) FROM handler_attempts")[0][0]
        self._attempts.last_at = float(latest or 0.0)
        self.poll(show=False)

    def poll(self, *, show: bool = True) -> list[str]:
        """Return one line per new delivery, handler run and refusal."""
        lines: list[tuple[float, str]] = []
        lines.extend(self._new_events())
        lines.extend(self._new_attempts())
        lines.extend(self._new_refusals())
        if not show:
            return []
        lines.sort(key=lambda item: item[0])
        return [text for _, text in lines]

    def heartbeat(self, now: float) -> str:
        """A line saying the tail is alive, with totals and the backlog."""
        try:
            pending, _ = self.store.backlog()
            backlog = f"{pending} pending"
        except StoreError:
            backlog = "store unreachable"
        totals = ", ".join(f"{count} {name}" for name, count in self.counts.items())
        return f"{_clock(now)} -- watching ({totals} seen; {backlog})"

    # -- private ------------------------------------------------------------

    def _new_events(self) -> list[tuple[float, str]]:
        rows = self.store.execute(
            "SELECT pk, source, event_id, type, received_at, key_id FROM events"
            " WHERE pk > ? ORDER BY pk LIMIT ?",
            (self._events.last_id - LOOKBACK_ROWS, PAGE_ROWS),
        )
        lines = []
        for pk, source, event_id, type_, received_at, key_id in rows:
            pk = int(pk)
            self._events.last_id = max(self._events.last_id, pk)
            if pk in self._seen_events:
                continue
            self._seen_events.add(pk)
            self.counts["deliveries"] += 1
            text = (
                f"{_clock(received_at)} delivery {source} {event_id} {type_}"
                f" key={key_id or '-'} pk={pk}"
            )
            lines.append((float(received_at), text))
        self._seen_events = {
            pk for pk in self._seen_events if pk > self._events.last_id - LOOKBACK_ROWS
        }
        return lines

    def _new_attempts(self) -> list[tuple[float, str]]:
        select = (
            "SELECT a.event_pk, a.handler, a.attempt, a.status, a.error,"
            " a.duration_ms, a.at, e.source, e.event_id"
            " FROM handler_attempts a JOIN events e ON e.pk = a.event_pk"
        )
        last_at = self._attempts.last_at
        # Newer rows move the cursor; the look-back finds rows committed late.
        rows = self.store.execute(
            select + " WHERE a.at > ? ORDER BY a.at LIMIT ?", (last_at, PAGE_ROWS)
        ) + self.store.execute(
            select + " WHERE a.at >= ? AND a.at <= ? ORDER BY a.at DESC LIMIT ?",
            (last_at - LOOKBACK_SECONDS, last_at, PAGE_ROWS),
        )
        lines = []
        for (
            pk,
            handler,
            attempt,
            status,
            error,
            duration_ms,
            at,
            source,
            event_id,
        ) in rows:
            key = (int(pk), str(handler), int(attempt), float(at))
            self._attempts.last_at = max(self._attempts.last_at, float(at))
            if key in self._seen_attempts:
                continue
            self._seen_attempts.add(key)
            self.counts["handler runs"] += 1
            text = (
                f"{_clock(at)} handler {handler} {source} {event_id} {status}"
                f" attempt={attempt} {float(duration_ms):.1f}ms"
            )
            if error:
                text += " error=" + _short(error)
            lines.append((float(at), text))
        horizon = self._attempts.last_at - LOOKBACK_SECONDS
        self._seen_attempts = {key for key in self._seen_attempts if key[3] >= horizon}
        return lines

    def _new_refusals(self) -> list[tuple[float, str]]:
        found = self.refusal_log.list(
            after_id=max(0, self._refusals.last_id - LOOKBACK_ROWS), limit=PAGE_ROWS
        )
        lines = []
        for refusal in found:
            refusal_id = refusal.id or 0
            self._refusals.last_id = max(self._refusals.last_id, refusal_id)
            if refusal_id in self._seen_refusals:
                continue
            self._seen_refusals.add(refusal_id)
            self.counts["refusals"] += 1
            text = (
                f"{_clock(refusal.at)} refused {refusal.source} {refusal.status}"
                f" {refusal.code} from={refusal.client_ip or '-'} id={refusal_id}"
            )
            if refusal.detail:
                text += " reason=" + _short(refusal.detail)
            lines.append((refusal.at, text))
        horizon = self._refusals.last_id - LOOKBACK_ROWS
        self._seen_refusals = {item for item in self._seen_refusals if item > horizon}
        return lines


def follow(
    tail: Tail,
    emit: Callable[[str], None],
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    interval_seconds: float = 0.5,
    heartbeat_seconds: float = 5.0,
    max_seconds: float | None = None,
) -> None:
    """Poll ``tail`` and emit its lines until ``max_seconds`` pass.

    A heartbeat line is emitted every ``heartbeat_seconds``. A store
    failure is reported and polling goes on. Ctrl-C (KeyboardInterrupt)
    is left to the caller.
    """
    started = clock()
    emit(tail.heartbeat(started))
    beat_at = started
    while max_seconds is None or clock() - started < max_seconds:
        try:
            for line in tail.poll():
                emit(line)
        except StoreError as err:
            emit(f"{_clock(clock())} -- store unreachable: {err}")
        now = clock()
        if now - beat_at >= heartbeat_seconds:
            emit(tail.heartbeat(now))
            beat_at = now
        sleep(interval_seconds)


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(float(moment)).strftime("%H:%M:%S")


def _short(text: str) -> str:
    flat = " ".join(str(text).split())
    if len(flat) > MAX_DETAIL_CHARS:
        return flat[: MAX_DETAIL_CHARS - 3] + "..."
    return flat
