"""The gunicorn worker the gateway runs on: gthread with a request deadline.

gunicorn's ``gthread`` worker reads a request's headers and body in a
pool thread from a blocking socket, with no limit on how long that may
take. A client that trickles its headers or body a byte at a time keeps
the thread for as long as it likes; a handful of such clients hold every
thread of a worker, while the worker's heartbeat goes on, so gunicorn's
``timeout`` never fires. :class:`DeadlineThreadWorker` gives each request
at most ``timeout`` seconds (gunicorn's own setting, 30 in
``gunicorn.conf.py``) from the moment a thread takes it up. When that
passes, the read side of the connection is shut: the blocked read ends at
once, a half-read body is answered 400 ``invalid_payload`` by the gateway,
and half-read headers close the connection. See docs/security.md.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

logger = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 0.25


class RequestDeadlines:
    """Shuts the read side of sockets whose request outlived its deadline.

    One watcher thread per process, started on first use. Thread-safe.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        interval_seconds: float = CHECK_INTERVAL_SECONDS,
    ) -> None:
        """Build an idle watcher; ``clock`` gives monotonic seconds."""
        self._clock = clock
        self._interval_seconds = interval_seconds
        self._deadlines: dict[int, tuple[socket.socket, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, sock: socket.socket, seconds: float) -> Iterator[None]:
        """Give the request being read from ``sock`` at most ``seconds``."""
        key = id(sock)
        with self._lock:
            self._deadlines[key] = (sock, self._clock() + seconds)
            self._start()
        try:
            yield
        finally:
            with self._lock:
                self._deadlines.pop(key, None)

    def expire(self) -> int:
        """Shut the read side of every overdue socket; return how many."""
        now = self._clock()
        with self._lock:
            overdue = [
                (key, sock)
                for key, (sock, deadline) in self._deadlines.items()
                if deadline <= now
            ]
            for key, sock in overdue:
                del self._deadlines[key]
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:  # already closed by the client or the worker
                    continue
        if overdue:
            logger.warning(
                "request deadline passed; connection read side shut",
                extra={"connections": len(overdue)},
            )
        return len(overdue)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="request-deadlines", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._interval_seconds)
            try:
                self.expire()
            except Exception:  # the watcher must outlive any one failure
                logger.exception("request deadline check failed")


class DeadlineThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, with a deadline on every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the worker as gunicorn does, plus its deadline watcher."""
        super().__init__(*args, **kwargs)
        self.deadlines = RequestDeadlines()

    def handle(self, conn: Any) -> Any:
        """Serve one request on ``conn`` within ``timeout`` seconds."""
        with self.deadlines.watch(conn.sock, float(self.cfg.timeout)):
            return super().handle(conn)
