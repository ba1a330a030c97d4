"""What the outbound client raises and returns: errors and results.

Re-exported by :mod:`gateway.client`, which is where callers import
them from. The errors are outbound failures and deliberately not part
of the ``GatewayError`` tree (see :mod:`gateway.client`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BatchItemResult",
    "BatchResult",
    "ClientError",
    "ConnectionFailed",
    "InvalidResponse",
    "MessageStatus",
    "NotFoundError",
    "RateLimitError",
    "RequestTimeout",
    "SentMessage",
]


class ClientError(Exception):
    """Base of every failure of a call to the provider's API."""


class APIError(ClientError):
    """The provider answered with an HTTP error status.

    ``status`` is the HTTP status and ``message`` the provider's own
    explanation (or the HTTP reason when it gave none), with the API key
    removed should the provider echo it.
    """

    def __init__(self, status: int, message: str, *, method: str, url: str) -> None:
        super().__init__(f"{method} {url} failed with HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.method = method
        self.url = url


class AuthenticationError(APIError):
    """The provider refused the API key (HTTP 401 or 403)."""


class NotFoundError(APIError):
    """The provider knows no such resource (HTTP 404)."""


class RateLimitError(APIError):
    """The provider is rate limiting this key (HTTP 429).

    ``retry_after`` is the delay in seconds the provider asked for, or
    ``None`` when it named none.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        method: str,
        url: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message, method=method, url=url)
        self.retry_after = retry_after


class RequestTimeout(ClientError, TimeoutError):
    """The provider did not answer within the client's timeout."""


class ConnectionFailed(ClientError):
    """No connection to the provider's API could be made or kept."""


class InvalidResponse(ClientError):
    """The provider answered success with a body the client cannot use."""


@dataclass(frozen=True)
class SentMessage:
    """A message the provider accepted.

    ``created_at`` is timezone-aware (UTC when the provider gave no
    offset) or ``None`` when the provider sent no usable timestamp.
    ``idempotency_key`` is the key the send carried. ``raw`` holds the
    provider's whole answer for fields this class does not name.
    """

    id: str
    status: str | None
    to: str | None
    created_at: datetime | None
    idempotency_key: str
    raw: Mapping[str, Any] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )


@dataclass(frozen=True)
class MessageStatus:
    """The provider's latest known state of one message.

    ``status`` is one of ``queued``, ``sent``, ``delivered``, ``read`` and
    ``failed`` as the provider reports it (lower-cased), or ``None`` when
    absent. ``timestamp`` is timezone-aware or ``None``; ``error`` is the
    provider's failure reason, if any.
    """

    id: str
    status: str | None
    to: str | None
    timestamp: datetime | None
    error: str | None
    raw: Mapping[str, Any] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )


@dataclass(frozen=True)
class BatchItemResult:
    """The outcome of one message of a batch: a sent message or an error.

    ``index`` is the message's position in the input.
    """

    index: int
    message: SentMessage | None = None
    error: ClientError | None = None

    @property
    def ok(self) -> bool:
        """Whether the provider accepted this message."""
        return self.error is None


@dataclass(frozen=True)
class BatchResult:
    """The outcomes of a batch, one per input message, in input order."""

    results: tuple[BatchItemResult, ...]

    @property
    def succeeded(self) -> int:
        """How many messages the provider accepted."""
        return sum(1 for result in self.results if result.ok)

    @property
    def failed(self) -> int:
        """How many messages failed after the client's retries."""
        return len(self.results) - self.succeeded
