"""When the outbound client tries again, and how long it waits first.

Connection errors, timeouts, HTTP 429 and 5xx are retried with
exponential backoff and full jitter, unless the provider's
``Retry-After`` names the wait. :class:`gateway.client.IntegrationClient`
applies the policy, logs and sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

import requests

BACKOFF_BASE_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 120.0


def backoff_seconds(
    attempt: int, max_backoff_seconds: float, rng: random.Random
) -> float:
    """A random wait before retrying after try ``attempt`` (from 1).

    Full jitter: uniform between 0 and ``min(max_backoff_seconds,
    BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))`` seconds.
    """
    ceiling = min(max_backoff_seconds, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


def is_retryable_status(status: int) -> bool:
    """Whether an answer with ``status`` is worth another try (429, 5xx)."""
    return status == 429 or 500 <= status <= 599


def retry_after_seconds(
    response: requests.Response, clock: Callable[[], float]
) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds, or ``None``.

    Takes seconds or an HTTP date (``clock`` gives unix seconds for the
    latter); a missing, negative or unreadable value gives ``None``.
    """
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds != float("inf") else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - clock())
