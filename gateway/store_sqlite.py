"""The embedded back-end of the event store: one SQLite file in WAL mode.

``synchronous=FULL`` makes an acknowledged event survive a crash or a
power loss. Each thread opens its own connection; the threads of one
process take turns on a lock, and waiting for another process's write
lock is done here in short polls with jitter rather than by SQLite's
own busy handler, whose growing sleeps starve the process that lost the
first race.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError
from .store import Cursor, Store

logger = logging.getLogger(__name__)

BUSY_FIRST_PAUSE_SECONDS = 0.0001
BUSY_LAST_PAUSE_SECONDS = 0.002


class SQLiteStore(Store):
    """The embedded store: one SQLite file in WAL mode.

    Each thread opens its own connection. Writes wait up to
    ``busy_timeout_ms`` for the file lock held by another process.
    """

    kind = "sqlite"

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000):
        super().__init__()
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Held for each transaction and by close(): closing a connection
        # that another thread is using crashes the sqlite3 module. SQLite
        # serialises writers anyway, so this costs no concurrency; and the
        # threads of this process get the file as soon as it is free, where
        # SQLite's busy handler would sleep 1, 2, 5, 10... ms between polls.
        self._use = threading.RLock()
        self._closed = False
        self._file_id: tuple[int, int] | None = None
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create the folder of {path}") from err

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            try:
                # Switching a new file to WAL can answer "locked" at once,
                # without SQLite's busy handler, while another connection
                # switches it too; so it waits in the same short steps.
                self._when_free(lambda: connection.execute("PRAGMA journal_mode = WAL"))
                # FULL: a committed event survives power loss, not only a
                # crash.
                connection.execute("PRAGMA synchronous = FULL")
                connection.execute("PRAGMA foreign_keys = ON")
                # Waiting for another process's write lock is done by
                # _when_free, in short steps; SQLite's own busy handler
                # sleeps 1, 2, 5, 10... up to 100 ms per poll, which starves
                # the process that lost the first race.
                connection.execute("PRAGMA busy_timeout = 0")
            except sqlite3.Error:
                connection.close()
                raise
            if self._file_id is None and self.path != ":memory:":
                try:
                    status = os.stat(self.path)
                except OSError as err:
                    connection.close()
                    raise StoreError(
                        f"cannot read the SQLite file {self.path}"
                    ) from err
                self._file_id = (status.st_dev, status.st_ino)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        with self._use:
            if self._closed:
                raise StoreError("the SQLite store is closed")
            self._check_file()
            try:
                connection = self._connection()
                cursor = connection.cursor()
                self._begin(cursor)
            except sqlite3.Error as err:
                self._local.connection = None
                raise StoreError(f"the SQLite store is unavailable: {err}") from err
            try:
                yield cursor
                cursor.execute("COMMIT")
            except sqlite3.Error as err:
                _rollback(connection)
                raise StoreError(f"the SQLite store failed: {err}") from err
            except BaseException:
                _rollback(connection)
                raise
            finally:
                cursor.close()

    def _check_file(self) -> None:
        """Refuse to write once the database file is gone or replaced.

        Open connections would go on writing into a deleted file that no
        new process can read: every event acknowledged then would be lost
        at the next restart. So the file's identity is checked before each
        transaction (one stat call); the answer is then 503 and /readyz
        says the store is unreachable until an operator restores the file
        and restarts.
        """
        if self.path == ":memory:":
            return
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            if self._file_id is None:
                return  # not created yet: the first connection creates it
            raise StoreError(
                f"the SQLite file {self.path} was removed; restore it and restart"
            ) from None
        except OSError as err:
            raise StoreError(f"cannot read the SQLite file {self.path}") from err
        identity = (status.st_dev, status.st_ino)
        if self._file_id is None:
            self._file_id = identity
        elif identity != self._file_id:
            raise StoreError(
                f"the SQLite file {self.path} was replaced; restart the gateway"
            )

    def _begin(self, cursor: sqlite3.Cursor) -> None:
        """Start a write transaction, waiting up to ``busy_timeout_ms``."""
        self._when_free(lambda: cursor.execute("BEGIN IMMEDIATE"))

    def _when_free(self, action: Callable[[], object]) -> None:
        """Run ``action``, retrying while the database is locked.

        Polls every 0.1 to 2 ms (with jitter) while another process holds
        the lock, so the wait ends soon after the lock is free; gives up
        after ``busy_timeout_ms`` with SQLite's own error.
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        pause_seconds = BUSY_FIRST_PAUSE_SECONDS
        while True:
            try:
                action()
                return
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause_seconds * random.uniform(0.5, 1.5))
            pause_seconds = min(pause_seconds * 2, BUSY_LAST_PAUSE_SECONDS)

    def close(self) -> None:
        with self._use, self._lock:
            self._closed = True
            for connection in self._connections:
                try:
                    connection.close()
                except sqlite3.Error:
                    logger.debug("closing a SQLite connection failed", exc_info=True)
            self._connections.clear()
        self._local = threading.local()


def _is_busy(err: sqlite3.OperationalError) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_BUSY)
    return "locked" in str(err)


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error:
        logger.debug("rollback failed", exc_info=True)
