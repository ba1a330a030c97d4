"""The refusal log: every refused delivery, with its reason, for operators.

A client gets only the contract's machine code; the precise reason
(``detail``: which header is missing or malformed, the timestamp skew,
which secrets were tried, the likely cause) is kept here, with the
source, time, client IP, status, request id, body size and body SHA-256.
The body itself, signatures and secrets are never kept.

Writing is done by a background thread per process
(:class:`RefusalRecorder`), so a slow or unreachable store never delays
an answer, and it is bounded three ways: refusals of codes a flood
produces cheaply (``rate_limited``, ``unknown_source``,
``method_not_allowed``) are recorded once per client, source and code per
minute; a token bucket caps writes per second; the table keeps at most
``max_rows`` rows and none older than the retention period. What is not
recorded is counted in ``gateway_refusals_unrecorded_total``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .counters import REFUSALS_UNRECORDED
from .errors import StoreError
from .store import Store

logger = logging.getLogger(__name__)

DAY_SECONDS = 86_400
THROTTLED_CODES = frozenset({"rate_limited", "unknown_source", "method_not_allowed"})
THROTTLE_WINDOW_SECONDS = 60.0
MAX_THROTTLE_KEYS = 10_000
WRITES_PER_SECOND = 50.0
WRITE_BURST = 200
QUEUE_SIZE = 1_000
BATCH_SIZE = 100
PRUNE_EVERY_WRITES = 200
PRUNE_EVERY_SECONDS = 60.0
MAX_TEXT_CHARS = 500
_COLUMNS = (
    "id, source, at, client_ip, status, code, detail, request_id, body_bytes,"
    " body_sha256, scheme, content_type, user_agent, header_names"
)
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS refusals (
        id {serial} PRIMARY KEY,
        source TEXT NOT NULL,
        at {real} NOT NULL,
        client_ip TEXT,
        status INTEGER NOT NULL,
        code TEXT NOT NULL,
        detail TEXT,
        request_id TEXT,
        body_bytes BIGINT,
        body_sha256 TEXT,
        scheme TEXT,
        content_type TEXT,
        user_agent TEXT,
        header_names TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS refusals_at ON refusals (at)",
]


@dataclass(frozen=True)
class Refusal:
    """One refused delivery as recorded; ``id`` is None until stored.

    ``header_names`` lists the names (never the values) of the headers the
    delivery carried, comma-separated.
    """

    source: str
    at: float
    status: int
    code: str
    client_ip: str | None = None
    detail: str | None = None
    request_id: str | None = None
    body_bytes: int | None = None
    body_sha256: str | None = None
    scheme: str | None = None
    content_type: str | None = None
    user_agent: str | None = None
    header_names: str | None = None
    id: int | None = None


class RefusalLog:
    """The ``refusals`` table of a store: write, read, prune."""

    def __init__(
        self, store: Store, *, max_rows: int = 10_000, retention_days: float = 7.0
    ):
        self.store = store
        self.max_rows = max_rows
        self.retention_days = retention_days

    def migrate(self) -> None:
        """Create the table and its index if missing."""
        self.store.create_tables(_SCHEMA)

    def insert(self, refusals: list[Refusal]) -> None:
        """Store refusals in one statement."""
        if not refusals:
            return
        placeholders = ", ".join(["(" + ", ".join("?" * 13) + ")"] * len(refusals))
        params: list[Any] = []
        for item in refusals:
            params.extend(
                [
                    _clip(item.source),
                    item.at,
                    _clip(item.client_ip),
                    item.status,
                    _clip(item.code),
                    _clip(item.detail, 2000),
                    _clip(item.request_id),
                    item.body_bytes,
                    item.body_sha256,
                    _clip(item.scheme),
                    _clip(item.content_type),
                    _clip(item.user_agent),
                    _clip(item.header_names, 2000),
                ]
            )
        self.store.execute(
            f"INSERT INTO refusals ({_COLUMNS.removeprefix('id, ')})"
            f" VALUES {placeholders}",
            params,
        )

    def get(self, refusal_id: int) -> Refusal | None:
        """Return one refusal by id, or None."""
        rows = self.store.execute(
            f"SELECT {_COLUMNS} FROM refusals WHERE id = ?", (refusal_id,)
        )
        return _refusal(rows[0]) if rows else None

    def list(
        self,
        *,
        source: str | None = None,
        code: str | None = None,
        since: float | None = None,
        after_id: int | None = None,
        limit: int = 50,
        until: float | None = None,
        before_id: int | None = None,
    ) -> list[Refusal]:
        """Return refusals newest first (oldest first with ``after_id``).

        ``since`` and ``until`` bound the refusal time (``until``
        excluded); ``before_id`` pages back from a refusal id, newest
        first, as the console does.
        """
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("source = ?", source),
            ("code = ?", code),
            ("at >= ?", since),
            ("at < ?", until),
            ("id > ?", after_id),
            ("id < ?", before_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        order = "id" if after_id is not None else "id DESC"
        params.append(limit)
        rows = self.store.execute(
            f"SELECT {_COLUMNS} FROM refusals{where} ORDER BY {order} LIMIT ?", params
        )
        return [_refusal(row) for row in rows]

    def prune(self, *, now: float) -> int:
        """Delete refusals past the retention period or beyond ``max_rows``.

        Ids only grow, so the newest ``max_rows`` ids are kept. Returns how
        many rows were deleted.
        """
        rows = self.store.execute(
            "DELETE FROM refusals WHERE at < ?"
            " OR id <= (SELECT MAX(id) FROM refusals) - ? RETURNING id",
            (now - self.retention_days * DAY_SECONDS, self.max_rows),
        )
        return len(rows)


class RefusalRecorder:
    """Writes refusals in a background thread of each process; bounded.

    :meth:`record` never blocks and never raises: a refusal that cannot
    be queued is counted and dropped. Safe after ``fork``: a child gets
    its own queue and thread on first use.
    """

    def __init__(self, log: RefusalLog, *, clock: Callable[[], float] = time.time):
        self.log = log
        self.clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pid = -1
        self._queue: queue.Queue[Refusal] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._outstanding = 0
        self._throttle: dict[tuple[str | None, str, str], float] = {}
        self._tokens = float(WRITE_BURST)
        self._refilled_at = time.monotonic()
        self._migrated = False
        self._written_since_prune = 0
        self._pruned_at = 0.0

    def record(self, refusal: Refusal) -> bool:
        """Queue a refusal for writing; return False if it was not kept."""
        with self._lock:
            self._ensure_thread()
            reason = self._reject_reason(refusal)
            if reason is None:
                try:
                    self._queue.put_nowait(refusal)
                except queue.Full:
                    reason = "queue_full"
                else:
                    self._outstanding += 1
        if reason is not None:
            REFUSALS_UNRECORDED.labels(reason).inc()
            return False
        return True

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        """Wait until every queued refusal is written (or dropped)."""
        deadline = time.monotonic() + timeout_seconds
        with self._idle:
            while self._outstanding:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # -- private ------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue = queue.Queue(QUEUE_SIZE)
            self._outstanding = 0
            self._thread = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="gateway-refusals", daemon=True
            )
            self._thread.start()

    def _reject_reason(self, refusal: Refusal) -> str | None:
        if refusal.code in THROTTLED_CODES:
            key = (refusal.client_ip, refusal.source, refusal.code)
            last = self._throttle.get(key)
            if last is not None and refusal.at - last < THROTTLE_WINDOW_SECONDS:
                return "throttled"
            if len(self._throttle) >= MAX_THROTTLE_KEYS:
                self._throttle.clear()
            self._throttle[key] = refusal.at
        moment = time.monotonic()
        self._tokens = min(
            float(WRITE_BURST),
            self._tokens + (moment - self._refilled_at) * WRITES_PER_SECOND,
        )
        self._refilled_at = moment
        if self._tokens < 1:
            return "throttled"
        self._tokens -= 1
        return None

    def _loop(self) -> None:
        own_queue = self._queue
        while True:
            batch = [own_queue.get()]
            while len(batch) < BATCH_SIZE:
                try:
                    batch.append(own_queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except StoreError:
                REFUSALS_UNRECORDED.labels("store_error").inc(len(batch))
                logger.warning(
                    "refusals could not be recorded", extra={"count": len(batch)}
                )
            except Exception:  # the writer thread must survive anything
                REFUSALS_UNRECORDED.labels("store_error").inc(len(batch))
                logger.exception("refusal writer failed")
            with self._idle:
                self._outstanding = max(0, self._outstanding - len(batch))
                self._idle.notify_all()

    def _write(self, batch: list[Refusal]) -> None:
        if not self._migrated:
            self.log.migrate()
            self._migrated = True
        self.log.insert(batch)
        self._written_since_prune += len(batch)
        now = self.clock()
        if (
            self._written_since_prune >= PRUNE_EVERY_WRITES
            or now - self._pruned_at >= PRUNE_EVERY_SECONDS
        ):
            self._written_since_prune = 0
            self._pruned_at = now
            self.log.prune(now=now)


def _clip(value: str | None, limit: int = MAX_TEXT_CHARS) -> str | None:
    if value is None:
        return None
    return value[:limit]


def _refusal(row: Any) -> Refusal:
    (
        refusal_id,
        source,
        at,
        client_ip,
        status,
        code,
        detail,
        request_id,
        body_bytes,
        body_sha256,
        scheme,
        content_type,
        user_agent,
        header_names,
    ) = row
    return Refusal(
        source=source,
        at=float(at),
        status=int(status),
        code=code,
        client_ip=client_ip,
        detail=detail,
        request_id=request_id,
        body_bytes=None if body_bytes is None else int(body_bytes),
        body_sha256=body_sha256,
        scheme=scheme,
        content_type=content_type,
        user_agent=user_agent,
        header_names=header_names,
        id=int(refusal_id),
    )
