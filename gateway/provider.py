"""Whether the first provider's API answers, for the readiness report.

Opt-in with ``GATEWAY_READYZ_PROVIDER=1``: ``/readyz`` then shows
``"provider": "ok"`` or ``"degraded"``. A dead provider never makes the
gateway unready, since receiving webhooks does not need it; only sending
does. The check is ``GET <INTEGRATION_API_URL>/health`` without
credentials, any 2xx meaning ``ok``; it waits at most
:data:`TIMEOUT_SECONDS` and its result is kept for :data:`CACHE_SECONDS`,
so a probe polling ``/readyz`` often does not turn into a load on the
provider.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import requests

from .client import USER_AGENT
from .config import Settings

logger = logging.getLogger(__name__)

HEALTH_PATH = "/health"
TIMEOUT_SECONDS = 2.0
CACHE_SECONDS = 30.0
OK = "ok"
DEGRADED = "degraded"


class ProviderHealth:
    """Checks the provider's health endpoint, at most once per cache period.

    Thread-safe. While one thread checks, the others get the previous
    result at once instead of waiting, except before the first result.
    Each check opens and closes its own connection, so the checker can
    be built before a server forks its workers.

    :param base_url: the provider's API root (``INTEGRATION_API_URL``).
    :param timeout_seconds: to connect and to read the answer.
    :param cache_seconds: how long a result, good or bad, is kept.
    :param clock: unix seconds.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = TIMEOUT_SECONDS,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = base_url.rstrip("/") + HEALTH_PATH
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._status: str | None = None
        self._checked_at = 0.0

    def status(self) -> str:
        """Return ``ok`` or ``degraded``, checking again when the cache is old."""
        if self._is_fresh():
            return self._status or DEGRADED
        if not self._lock.acquire(blocking=self._status is None):
            return self._status or DEGRADED
        try:
            if not self._is_fresh():
                self._update(self._check())
            return self._status or DEGRADED
        finally:
            self._lock.release()

    def _is_fresh(self) -> bool:
        return (
            self._status is not None
            and 0 <= self.clock() - self._checked_at < self.cache_seconds
        )

    def _check(self) -> tuple[str, str]:
        """Return the status and, for the log, why."""
        try:
            with requests.Session() as session:
                response = session.get(
                    self.url,
                    headers={"User-Agent": USER_AGENT},
                    timeout=self.timeout_seconds,
                    allow_redirects=False,
                )
                response.close()
        except requests.Timeout:
            return DEGRADED, "timeout"
        except requests.RequestException as err:
            return DEGRADED, type(err).__name__
        if 200 <= response.status_code < 300:
            return OK, f"HTTP {response.status_code}"
        return DEGRADED, f"HTTP {response.status_code}"

    def _update(self, result: tuple[str, str]) -> None:
        status, reason = result
        if status != self._status:
            fields = {"status": status, "reason": reason, "url": _loggable(self.url)}
            if status == OK:
                logger.info("provider API reachable", extra=fields)
            else:
                logger.warning("provider API degraded", extra=fields)
        self._status = status
        self._checked_at = self.clock()


def provider_health(
    settings: Settings, clock: Callable[[], float] = time.time
) -> ProviderHealth | None:
    """Return the checker the settings ask for, or None when not opted in."""
    if not settings.readyz_provider or not settings.api_url:
        return None
    return ProviderHealth(settings.api_url, clock=clock)


def _loggable(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
