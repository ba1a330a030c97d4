"""Outbound client for the first provider's messaging API.

:class:`IntegrationClient` sends messages, reads their status and sends
batches over one pooled :class:`requests.Session` (CONTRACT.md section 6).
Failures reach callers only as :class:`ClientError` subclasses; these are
outbound failures and deliberately not part of the ``GatewayError`` tree,
which describes answers the gateway gives to its own clients.

This module does the requests: session, authentication, retries and
their logging. What is sent and read lives in
:mod:`gateway.client_payloads`, the retry policy in
:mod:`gateway.client_retry`, the errors and results in
:mod:`gateway.client_types`.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from gateway.client_payloads import (
    check_batch_item,
    check_idempotency_key,
    json_object,
    loggable_url,
    message_body,
    parse_message_status,
    parse_sent_message,
    provider_message,
)
from gateway.client_retry import (
    MAX_BACKOFF_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    backoff_seconds,
    is_retryable_status,
    retry_after_seconds,
)
from gateway.client_types import (
    APIError,
    AuthenticationError,
    BatchItemResult,
    BatchResult,
    ClientError,
    ConnectionFailed,
    InvalidResponse,
    MessageStatus,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    SentMessage,
)
from gateway.errors import ConfigError

# The errors and results live in gateway.client_types; callers import
# them from here.
__all__ = [
    "APIError",
    "AuthenticationError",
    "BatchItemResult",
    "BatchResult",
    "ClientError",
    "ConnectionFailed",
    "IntegrationClient",
    "InvalidResponse",
    "MessageStatus",
    "NotFoundError",
    "RateLimitError",
    "RequestTimeout",
    "SentMessage",
]

__version__ = "0.1.0"

logger = logging.getLogger(__name__)

USER_AGENT = f"webhook-gateway/{__version__}"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_BATCH_WORKERS = 4
MAX_BATCH_WORKERS = 16
API_KEY_VARIABLE = "INTEGRATION_API_KEY"
API_URL_VARIABLE = "INTEGRATION_API_URL"
REDACTED = "[redacted]"


class IntegrationClient:
    """Client for the provider's messaging API.

    Every request carries ``Authorization: Bearer <api_key>`` and
    ``User-Agent: webhook-gateway/<version>``. Connection errors,
    timeouts, HTTP 429 and HTTP 5xx are retried up to ``retries`` times
    (so ``retries=3`` makes at most four attempts) with exponential
    backoff and full jitter: before retry *n* (from 0) the client waits a
    random time between 0 and ``min(max_backoff_seconds, 0.5 * 2**n)``
    seconds. A ``Retry-After`` header (seconds or HTTP date) replaces that
    wait; when it asks for more than ``MAX_RETRY_AFTER_SECONDS`` the
    client stops and raises :class:`RateLimitError` (or :class:`APIError`
    for a 5xx) at once rather than block the caller that long. Any other
    4xx is raised at once. Redirects are not followed; a 3xx answer is an
    :class:`APIError`.

    With ``debug=True`` each attempt is logged at DEBUG with its method,
    URL, status, duration and body sizes. The API key never appears in
    logs, exception messages or ``repr``.

    The client may be shared between threads (``send_batch`` does so);
    ``on_sent`` may then be called from several threads at once.

    :param api_key: the provider's bearer key; must not be empty.
    :param base_url: the API root, ``http`` or ``https``, without
        credentials, query or fragment.
    :param timeout: seconds to wait for a connection and for each read.
    :param retries: how many times a retryable failure is retried.
    :param debug: log every attempt at DEBUG.
    :param session: a session to use instead of a new pooled one; the
        client neither changes nor closes a session it was given.
    :param sleep: called with the seconds to wait between attempts.
    :param max_backoff_seconds: the longest computed backoff wait.
    :param on_sent: called with every :class:`SentMessage` after a
        successful send; an exception it raises is logged and swallowed.
    :param clock: current time in unix seconds, for HTTP-date
        ``Retry-After`` values.
    :param rng: source of jitter.
    :raises ValueError: for an empty key, a malformed URL or a negative
        timeout, retry count or backoff.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        timeout: float = 30,
        retries: int = 3,
        debug: bool = False,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
        on_sent: Callable[[SentMessage], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("The API key must be a non-empty string.")
        if timeout <= 0:
            raise ValueError("The timeout must be a positive number of seconds.")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError("The retry count must be a whole number, 0 or more.")
        if max_backoff_seconds < 0:
            raise ValueError("The longest backoff must be 0 seconds or more.")
        self.base_url = _validate_base_url(base_url)
        self.timeout = float(timeout)
        self.retries = retries
        self.debug = debug
        self.max_backoff_seconds = float(max_backoff_seconds)
        self._auth = _BearerAuth(api_key)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._on_sent = on_sent
        self._owns_session = session is None
        self._session = session if session is not None else _pooled_session()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, **options: Any
    ) -> IntegrationClient:
        """Build a client from ``INTEGRATION_API_KEY`` and ``INTEGRATION_API_URL``.

        Other constructor arguments may be given as keywords.

        :raises ConfigError: naming the variable that is missing or empty.
        """
        values: dict[str, str] = {}
        for name in (API_KEY_VARIABLE, API_URL_VARIABLE):
            value = environ.get(name, "").strip()
            if not value:
                raise ConfigError(
                    f"{name} is not set. Set it to use the outbound client."
                )
            values[name] = value
        return cls(values[API_KEY_VARIABLE], values[API_URL_VARIABLE], **options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, api_key={REDACTED}, "
            f"timeout={self.timeout!r}, retries={self.retries!r})"
        )

    def __enter__(self) -> IntegrationClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections, unless the session was given."""
        if self._owns_session:
            self._session.close()

    def send_message(
        self,
        to: str,
        content: str | Mapping[str, Any],
        type: str = "text",
        metadata: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> SentMessage:
        """Send one message; return what the provider accepted.

        POSTs ``{"to", "content", "type", "metadata"}`` to
        ``<base_url>/messages`` (``metadata`` is ``{}`` when omitted).
        The request carries an ``Idempotency-Key`` header: a fresh UUID4
        unless ``idempotency_key`` is given, the same on every retry of
        this call, so that a retried send cannot create two messages.
        Pass your own key to make a later, separate call a safe repeat.

        :param type: ``text``, ``media`` or ``template``.
        :raises ValueError: before any request, for an unknown type, an
            empty recipient, or content or metadata that is not JSON.
        :raises ClientError: when the send fails after the retries.
        """
        body = message_body(to, content, type, metadata)
        check_idempotency_key(idempotency_key)
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        url = f"{self.base_url}/messages"
        payload = self._request(
            "POST", url, body=body, headers={IDEMPOTENCY_HEADER: key}
        )
        message = parse_sent_message(payload, key)
        self._notify_sent(message)
        return message

    def get_status(self, message_id: str) -> MessageStatus:
        """Return the provider's current status of one message.

        :raises ValueError: for an empty id.
        :raises NotFoundError: when the provider knows no such message.
        :raises ClientError: for any other failure after the retries.
        """
        if not isinstance(message_id, str) or not message_id:
            raise ValueError("The message id must be a non-empty string.")
        url = f"{self.base_url}/messages/{quote(message_id, safe='')}"
        return parse_message_status(self._request("GET", url))

    def send_batch(
        self,
        messages: Iterable[Mapping[str, Any]],
        max_workers: int = DEFAULT_BATCH_WORKERS,
    ) -> BatchResult:
        """Send several messages concurrently; return one result per message.

        Each message is a mapping of :meth:`send_message`'s arguments
        (``to`` and ``content`` required; ``type``, ``metadata`` and
        ``idempotency_key`` optional). Every message is checked before any
        is sent, so a malformed batch sends nothing. At most
        ``max_workers`` requests run at once (capped at
        ``MAX_BATCH_WORKERS``, the connection pool's size). A message that
        fails after its retries is recorded as a failed result and does
        not stop the others.

        :raises ValueError: naming the position of the first malformed
            message, or for ``max_workers`` below 1.
        """
        if max_workers < 1:
            raise ValueError("max_workers must be 1 or more.")
        items = list(messages)
        for index, item in enumerate(items):
            check_batch_item(index, item)
        if not items:
            return BatchResult(results=())
        workers = min(max_workers, MAX_BATCH_WORKERS, len(items))

        def send_one(index: int) -> BatchItemResult:
            item = items[index]
            try:
                message = self.send_message(
                    item["to"],
                    item["content"],
                    item.get("type", "text"),
                    item.get("metadata"),
                    idempotency_key=item.get("idempotency_key"),
                )
            except ClientError as err:
                return BatchItemResult(index=index, error=err)
            return BatchItemResult(index=index, message=message)

        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="integration-batch"
        ) as executor:
            results = tuple(executor.map(send_one, range(len(items))))
        return BatchResult(results=results)

    def _notify_sent(self, message: SentMessage) -> None:
        if self._on_sent is None:
            return
        try:
            self._on_sent(message)
        except Exception:
            # A tracker that fails must never turn a delivered send into an
            # error: the caller would retry and the provider already has it.
            logger.exception("on_sent hook failed", extra={"message_id": message.id})

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any]:
        request_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if body is not None:
            request_headers["Content-Type"] = "application/json"
        request_headers.update(headers or {})
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._send_once(method, url, body, request_headers, attempt)
            except (RequestTimeout, ConnectionFailed) as err:
                if attempt == attempts:
                    raise
                self._wait_before_retry(method, url, attempt, None, type(err).__name__)
                continue
            if 200 <= response.status_code < 300:
                return json_object(response, method, url)
            error = self._error_for(response, method, url)
            if not is_retryable_status(response.status_code) or attempt == attempts:
                raise error
            wait = retry_after_seconds(response, self._clock)
            if wait is not None and wait > MAX_RETRY_AFTER_SECONDS:
                raise error
            self._wait_before_retry(
                method, url, attempt, wait, f"HTTP {response.status_code}"
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send_once(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        attempt: int,
    ) -> requests.Response:
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                url,
                data=body,
                headers=dict(headers),
                auth=self._auth,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as err:
            self._log_attempt(method, url, None, started, body, None, attempt)
            raise RequestTimeout(
                f"{method} {url} got no answer within {self.timeout:g} seconds."
            ) from err
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as err:
            # A connection dropped while the answer was being read is the
            # same failure as one refused outright, and as safe to retry.
            self._log_attempt(method, url, None, started, body, None, attempt)
            raise ConnectionFailed(
                f"{method} {url} could not reach the provider's API. "
                "Check INTEGRATION_API_URL and the network."
            ) from err
        except requests.RequestException as err:
            raise ClientError(
                f"{method} {url} failed before an answer: {type(err).__name__}."
            ) from err
        self._log_attempt(
            method, url, response.status_code, started, body, response, attempt
        )
        return response

    def _log_attempt(
        self,
        method: str,
        url: str,
        status: int | None,
        started: float,
        body: bytes | None,
        response: requests.Response | None,
        attempt: int,
    ) -> None:
        if not self.debug:
            return
        logger.debug(
            "provider request",
            extra={
                "method": method,
                "url": loggable_url(url),
                "status": status,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "request_bytes": len(body) if body is not None else 0,
                "response_bytes": len(response.content) if response is not None else 0,
                "attempt": attempt,
            },
        )

    def _wait_before_retry(
        self,
        method: str,
        url: str,
        attempt: int,
        retry_after: float | None,
        reason: str,
    ) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            delay = backoff_seconds(attempt, self.max_backoff_seconds, self._rng)
        logger.warning(
            "provider request retry scheduled",
            extra={
                "method": method,
                "url": loggable_url(url),
                "reason": reason,
                "attempt": attempt,
                "delay_seconds": round(delay, 3),
            },
        )
        self._sleep(delay)

    def _error_for(
        self, response: requests.Response, method: str, url: str
    ) -> APIError:
        status = response.status_code
        message = self._auth.redact(provider_message(response))
        shown_url = loggable_url(url)
        if status in (401, 403):
            return AuthenticationError(status, message, method=method, url=shown_url)
        if status == 404:
            return NotFoundError(status, message, method=method, url=shown_url)
        if status == 429:
            return RateLimitError(
                status,
                message,
                method=method,
                url=shown_url,
                retry_after=retry_after_seconds(response, self._clock),
            )
        return APIError(status, message, method=method, url=shown_url)


class _BearerAuth(AuthBase):
    """Sets the bearer header; holds the key so nothing else has to."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        return request

    def __repr__(self) -> str:
        return f"_BearerAuth(api_key={REDACTED})"

    def redact(self, text: str) -> str:
        return text.replace(self._api_key, REDACTED)


def _pooled_session() -> requests.Session:
    session = requests.Session()
    # One pool per host, large enough that every batch worker keeps its
    # own connection instead of opening and discarding extra ones.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=MAX_BATCH_WORKERS)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _validate_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise ValueError("The base URL must be a string.")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("The base URL must be an http or https URL with a host.")
    # Credentials, a query or a fragment would end up in every logged URL.
    if parts.username is not None or parts.password is not None:
        raise ValueError("The base URL must not carry credentials; use the API key.")
    if parts.query or parts.fragment:
        raise ValueError("The base URL must not carry a query or a fragment.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
