"""Relays chosen events to internal HTTP endpoints, signed as Standard Webhooks.

Configure it with environment variables, read when the module is
imported (load it with ``GATEWAY_HANDLERS=handlers.forward``):

``GATEWAY_FORWARD_RULES``
    Comma-separated ``[source:]pattern=url`` routes, for example
    ``integration:message.*=http://127.0.0.1:9000/hooks`` and
    ``invoice.paid=http://127.0.0.1:9001/billing`` joined by a comma.
    The pattern is an event type, a prefix wildcard or ``*``, as for
    ``@on``; the optional source narrows a route to one source. Each
    route is its own handler, so an endpoint that fails is retried and
    dead-lettered without touching the other routes.
``GATEWAY_FORWARD_SECRET``
    The ``whsec_<base64>`` secret the relays are signed with. Without it,
    a production gateway refuses to start; in development one is
    generated, kept in ``<GATEWAY_DATA_DIR>/dev-forward-secret`` and shown
    once on the terminal.
``GATEWAY_FORWARD_TIMEOUT_SECONDS``
    Seconds to wait to connect and for each read (default 5).

Each relay is a POST of ``{"id", "type", "timestamp", "source",
"event_id", "data"}`` where ``data`` is the event's body as the provider
sent it (parsed), with the ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` headers. The ``webhook-id`` is derived from the
source and the event id, so it is the same on every retry and replay and
the receiver can drop repeats. A 2xx answer is success; a connection
error, a timeout, 408, 429, 3xx and 5xx are retried by the gateway with
backoff and dead-lettered after the last retry; any other 4xx is
dead-lettered at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from gateway import DoNotRetry, Event, on
from gateway.client import USER_AGENT
from gateway.config import DEFAULT_DATA_DIR, secret_file
from gateway.errors import ConfigError
from gateway.logs import register_secrets
from gateway.schemes import get_scheme

logger = logging.getLogger(__name__)

RULES_VARIABLE = "GATEWAY_FORWARD_RULES"
SECRET_VARIABLE = "GATEWAY_FORWARD_SECRET"
TIMEOUT_VARIABLE = "GATEWAY_FORWARD_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 5.0
DEV_SECRET_FILE = "dev-forward-secret"
SECRET_KEY_BYTES = 32
WEBHOOK_ID_PREFIX = "fwd_"
# A client error the receiver may get over by itself: a request timeout
# on its side, or its own rate limit.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})


class ForwardFailed(Exception):
    """A relay failed in a way a later retry may fix."""


@dataclass(frozen=True)
class Route:
    """Where events of one type (or pattern), optionally of one source, go."""

    pattern: str
    url: str
    source: str | None = None

    @property
    def label(self) -> str:
        """A name of the route fit for logs: the URL without its query."""
        parts = urlsplit(self.url)
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        selector = f"{self.source}:{self.pattern}" if self.source else self.pattern
        return f"{selector}->{target}"


def parse_routes(text: str) -> tuple[Route, ...]:
    """Parse ``[source:]pattern=url`` routes separated by commas.

    :raises ConfigError: naming the position of the first bad route.
    """
    routes: list[Route] = []
    for index, entry in enumerate(part.strip() for part in text.split(",")):
        if not entry:
            continue
        where = f"{RULES_VARIABLE} route {index + 1}"
        selector, separator, url = entry.partition("=")
        if not separator:
            raise ConfigError(f"{where} must look like 'message.*=http://host/path'.")
        source, _, pattern = selector.strip().rpartition(":")
        route = Route(pattern.strip(), url.strip(), source.strip() or None)
        _check_route(where, route)
        if route in routes:
            raise ConfigError(f"{where} repeats an earlier route.")
        routes.append(route)
    return tuple(routes)


def webhook_id(source: str, event_id: str) -> str:
    """Return the relay id of an event: the same for every retry and replay."""
    digest = hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()
    return WEBHOOK_ID_PREFIX + digest[:32]


class Forwarder:
    """Relays events along its routes, one handler per route.

    Build one, then :meth:`connect` it to register its handlers with the
    gateway (or connect each of :attr:`relays` yourself). The session is
    shared by the handlers; the gateway's dispatcher calls them one at a
    time per process.

    :param routes: where to relay which events.
    :param secret: the ``whsec_`` secret relays are signed with.
    :param timeout_seconds: to connect, and for each read.
    :param session: a session to use; by default a new pooled one.
    :param clock: unix seconds, for ``webhook-timestamp``.
    :raises ConfigError: the secret cannot sign Standard Webhooks.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        secret: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_secret(secret)
        register_secrets([secret])
        self._secret = secret
        self._scheme = get_scheme("standard")
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._session = session if session is not None else _pooled_session()
        self.relays = tuple(Relay(self, route) for route in routes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(routes={len(self.relays)})"

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] = os.environ, **options: Any
    ) -> Forwarder | None:
        """Build the forwarder the environment describes, or None without routes.

        :raises ConfigError: a route, the secret or the timeout is invalid,
            or the secret is missing in production.
        """
        routes = parse_routes(environ.get(RULES_VARIABLE, ""))
        if not routes:
            return None
        secret = environ.get(SECRET_VARIABLE, "").strip()
        if not secret:
            if environ.get("GATEWAY_ENV", "development").strip() == "production":
                raise ConfigError(
                    f"{SECRET_VARIABLE} is not set. "
                    "Set it to a whsec_ secret to sign forwarded events."
                )
            data_dir = environ.get("GATEWAY_DATA_DIR", "").strip() or DEFAULT_DATA_DIR
            secret = _development_secret(Path(data_dir))
        options.setdefault("timeout_seconds", _timeout(environ))
        return cls(routes, secret, **options)

    def connect(self) -> None:
        """Register every route's handler with the gateway."""
        for relay in self.relays:
            on(relay.route.pattern, source=relay.route.source)(relay)

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def forward(self, route: Route, source: str, event: Event) -> None:
        """Relay one event along one route.

        :raises ForwardFailed: connection error, timeout, 3xx, 408, 429 or
            5xx; the dispatcher retries it.
        :raises DoNotRetry: any other 4xx; the receiver refused the event.
        """
        relay_id = webhook_id(source, event.id)
        body = _relay_body(relay_id, source, event)
        headers = self._scheme.sign(
            body, self._secret, now=int(self.clock()), message_id=relay_id
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        fields = {
            "source": source,
            "event_id": event.id,
            "event_type": event.type,
            "route": route.label,
            "webhook_id": relay_id,
            "attempt": event.attempt,
        }
        started = time.perf_counter()
        try:
            response = self._session.post(
                route.url,
                data=body,
                headers=headers,
                timeout=self.timeout_seconds,
                allow_redirects=False,
            )
        # The library's message holds the full URL, query and all, and the
        # dispatcher stores and logs what we raise: only the kind is kept.
        except requests.Timeout:
            raise ForwardFailed(
                f"{route.label} did not answer within {self.timeout_seconds} s"
            ) from None
        except requests.RequestException as err:
            raise ForwardFailed(
                f"{route.label} could not be reached ({type(err).__name__})"
            ) from None
        status = response.status_code
        response.close()
        fields["status"] = status
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if 200 <= status < 300:
            logger.info("event forwarded", extra=fields)
            return
        if 400 <= status < 500 and status not in RETRYABLE_CLIENT_STATUSES:
            raise DoNotRetry(f"{route.label} refused the event with HTTP {status}")
        raise ForwardFailed(f"{route.label} answered HTTP {status}")


class Relay:
    """The handler of one route: calls :meth:`Forwarder.forward`.

    Its handler name, under which the gateway records outcomes, names the
    route, so retries and dead letters are kept per route.
    """

    def __init__(self, forwarder: Forwarder, route: Route) -> None:
        self.forwarder = forwarder
        self.route = route
        self.__qualname__ = f"Relay[{route.label}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.route.label!r})"

    def __call__(self, source: str, event: Event) -> None:
        """Relay ``event``; see :meth:`Forwarder.forward`."""
        self.forwarder.forward(self.route, source, event)


def _check_route(where: str, route: Route) -> None:
    pattern = route.pattern
    if not pattern or not pattern.isprintable() or " " in pattern:
        raise ConfigError(f"{where} needs an event type or pattern before '='.")
    if "*" in pattern[:-1]:
        raise ConfigError(f"{where}: '*' may only end a pattern, as in 'message.*'.")
    parts = urlsplit(route.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} needs an http or https URL after '='.")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{where}: the URL must not carry credentials; "
            "the receiver checks the signature instead."
        )


def _check_secret(secret: str) -> None:
    if not secret.startswith("whsec_"):
        raise ConfigError(f"{SECRET_VARIABLE} must be a whsec_<base64> secret.")
    try:
        get_scheme("standard").load_key(secret, SECRET_VARIABLE)
    except ConfigError as err:
        raise ConfigError(f"{SECRET_VARIABLE}: {err}") from None


def _timeout(environ: Mapping[str, str]) -> float:
    text = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 300:
        raise ConfigError(
            f"{TIMEOUT_VARIABLE} must be a number of seconds above 0, at most 300."
        )
    return value


def _relay_body(relay_id: str, source: str, event: Event) -> bytes:
    document = {
        "id": relay_id,
        "type": event.type,
        "timestamp": event.received_at.isoformat().replace("+00:00", "Z"),
        "source": source,
        "event_id": event.id,
        "data": dict(event.payload),
    }
    # Compact and sorted, so a retry sends the very same bytes.
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _pooled_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _development_secret(data_dir: Path) -> str:
    """Return the development relay secret, creating it on first use.

    Kept in a file so every worker and restart signs alike. Shown once on
    the terminal when created, never in a log line.
    """
    path = data_dir / DEV_SECRET_FILE
    secret, created = secret_file(
        path,
        lambda: (
            "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_KEY_BYTES)).decode()
        ),
    )
    if not created:
        return secret
    logger.warning(
        "generated a development forwarding secret; set %s before production",
        SECRET_VARIABLE,
        extra={"path": str(path)},
    )
    sys.stderr.write(
        f"\n  Development secret for forwarded events: {secret}\n"
        f"  (kept in {path}; set {SECRET_VARIABLE} to use your own)\n\n"
    )
    sys.stderr.flush()
    return secret


_forwarder = Forwarder.from_environment()
if _forwarder is not None:
    _forwarder.connect()
