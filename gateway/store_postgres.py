"""The shared back-end of the event store, on PostgreSQL.

For many workers on many hosts: a psycopg connection pool per process,
and claims that lock rows with ``FOR UPDATE SKIP LOCKED`` so concurrent
dispatchers never take the same event. psycopg is imported only when a
PostgreSQL store is opened, so an installation on SQLite needs none of
it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ConfigError, StoreError
from .store import Cursor, Store

APPLICATION_NAME = "webhook-gateway"
_QUESTION_MARK = re.compile(r"\?")


class PostgresStore(Store):
    """The shared store for many workers and hosts, on PostgreSQL.

    Uses a psycopg connection pool per process of at most ``pool_size``
    connections (``GATEWAY_DB_POOL_SIZE``: the request threads plus the
    dispatcher thread of one worker). Claims lock rows with ``FOR UPDATE
    SKIP LOCKED`` so concurrent dispatchers never take the same event.
    """

    kind = "postgresql"
    _claim_suffix = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, pool_size: int = 4, timeout_seconds: float = 5.0):
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as err:
            raise ConfigError(
                "the PostgreSQL store needs psycopg and psycopg_pool"
            ) from err
        super().__init__()
        self._errors: tuple[type[BaseException], ...] = (
            psycopg.Error,
            _pool_error(),
        )
        self.pool_size = max(pool_size, 1)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=self.pool_size,
            timeout=timeout_seconds,
            open=False,
            check=ConnectionPool.check_connection,
            kwargs=_connection_options(url, timeout_seconds),
        )
        self._opened = False
        self._open_lock = threading.Lock()

    def _sql(self, statement: str) -> str:
        return _to_format_params(statement)

    def _minute_of(self, column: str) -> str:
        # PostgreSQL rounds when casting to an integer; SQLite truncates.
        return f"CAST(FLOOR({column} / 60) AS BIGINT)"

    def _ensure_open(self) -> None:
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    self._pool.open(wait=False)
                    self._opened = True

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        try:
            self._ensure_open()
            with self._pool.connection() as connection:
                with connection.transaction(), connection.cursor() as cursor:
                    yield cursor
        except self._errors as err:
            raise StoreError(
                f"the PostgreSQL store failed: {type(err).__name__}"
            ) from err

    def _column_types(self) -> tuple[str, str]:
        return "BIGSERIAL", "DOUBLE PRECISION"

    def _lock_schema(self, cursor: Cursor) -> None:
        # An advisory lock keeps concurrent workers from racing on DDL.
        cursor.execute("SELECT pg_advisory_xact_lock(727274)")

    def _column_names(self, cursor: Cursor, table: str) -> set[str]:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        return {row[0] for row in cursor.fetchall()}

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False


def _connection_options(url: str, timeout_seconds: float) -> dict[str, Any]:
    """Connection settings for PostgreSQL: a connect timeout and a name.

    The gateway's sessions carry ``application_name`` (default
    ``APPLICATION_NAME``) so operators can find them in
    ``pg_stat_activity``; an ``application_name`` in the URL wins.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    options: dict[str, Any] = {"connect_timeout": max(int(timeout_seconds), 1)}
    try:
        named = "application_name" in conninfo_to_dict(url)
    except psycopg.Error:  # a malformed URL fails at connect, as StoreError
        named = False
    if not named:
        options["application_name"] = APPLICATION_NAME
    return options


def _to_format_params(statement: str) -> str:
    return _QUESTION_MARK.sub("%s", statement)


def _pool_error() -> type[BaseException]:
    from psycopg_pool import PoolTimeout

    return PoolTimeout
