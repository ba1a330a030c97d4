"""Test kit for handler authors, and a pytest plugin.

With the package installed, pytest loads this module by itself (entry
point ``gateway.testing`` in the ``pytest11`` group); otherwise add
``pytest_plugins = ["gateway.testing"]`` to your ``conftest.py``. Fixtures:

- ``webhook_client``: a :class:`WebhookClient` on a fresh gateway (SQLite
  under the test's ``tmp_path``, no background dispatcher). It signs
  deliveries for any configured source with that source's own secret,
  posts them through the real webhook route, and runs dispatch
  synchronously so a test sees which handlers ran with what outcome.
- ``gateway_config``: configuration overrides, keyed by variable name;
  override this fixture to configure sources or ``GATEWAY_HANDLERS``.
- ``gateway_clock``: the :class:`ManualClock` the gateway runs on.
- ``gateway_app``: the Flask app itself.

Example::

    def test_failed_message_is_flagged(webhook_client):
        webhook_client.deliver(
            "integration", {"data": {"id": "msg_1"}}, event_type="message.failed"
        )
        result = webhook_client.dispatch()
        assert result.for_handler(flag_unreachable_owner)[0].status == "ok"

Test use only: the kit reads the configured secrets to sign deliveries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import pytest
from blinker import ANY
from flask import Flask
from werkzeug.test import TestResponse

from .config import Settings
from .deliveries import (
    HEADER_TYPED_SCHEMES,
    encode_body,
    prepare_body,
    sign_delivery,
)
from .dispatch import CLAIM_BATCH, HandlerOutcome
from .events import Event
from .signals import handler_name, signal
from .store import Store
from .web import Gateway, create_app, get_gateway

TEST_SECRET = "gateway-test-secret"
# Generous enough that no handler test trips over the per-IP limit.
TEST_RATE_LIMIT = "100000 per minute"
MAX_DISPATCH_ROUNDS = 100

HandlerRef = str | Callable[..., Any]


class ManualClock:
    """A clock that stands still until a test moves it (unix seconds)."""

    def __init__(self, now: float | None = None):
        self.now = float(int(time.time()) if now is None else now)

    def __call__(self) -> float:
        """Return the current time of this clock."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


@dataclass(frozen=True)
class DispatchedEvent:
    """One event taken by one dispatch pass, with what its handlers did.

    ``status`` is the event's status after the pass: ``done``,
    ``pending`` (a handler will be retried) or ``dead``.
    """

    event: Event
    status: str
    outcomes: tuple[HandlerOutcome, ...]


class DispatchResult(Sequence[DispatchedEvent]):
    """Every event a :meth:`WebhookClient.dispatch` call handled, in order."""

    def __init__(self, events: Sequence[DispatchedEvent]):
        self.events = list(events)

    @overload
    def __getitem__(self, index: int) -> DispatchedEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[DispatchedEvent]: ...

    def __getitem__(
        self, index: int | slice
    ) -> DispatchedEvent | Sequence[DispatchedEvent]:
        """Return the dispatched event(s) at ``index``."""
        return self.events[index]

    def __len__(self) -> int:
        """Return how many events were dispatched (a retried one counts again)."""
        return len(self.events)

    def __repr__(self) -> str:
        """Show each event and its outcomes, for assertion messages."""
        parts = [
            f"{item.event.source}/{item.event.id} ({item.event.type}) {item.status}: "
            + ", ".join(f"{o.handler}={o.status}" for o in item.outcomes)
            for item in self.events
        ]
        return "DispatchResult([" + "; ".join(parts) + "])"

    @property
    def outcomes(self) -> list[HandlerOutcome]:
        """Every handler outcome, in the order the handlers ran."""
        return [outcome for item in self.events for outcome in item.outcomes]

    @property
    def handlers(self) -> list[str]:
        """The names of the handlers that ran, each once, in first-run order."""
        return list(dict.fromkeys(outcome.handler for outcome in self.outcomes))

    def for_handler(self, handler: HandlerRef) -> list[HandlerOutcome]:
        """Return the outcomes of one handler, given as a function or a name."""
        name = handler if isinstance(handler, str) else handler_name(handler)
        return [
            outcome
            for outcome in self.outcomes
            if outcome.handler == name or outcome.handler.startswith(name + "[")
        ]

    def for_event(self, event_id: str) -> list[HandlerOutcome]:
        """Return the outcomes of every handler for one event id."""
        return [
            outcome
            for item in self.events
            if item.event.id == event_id
            for outcome in item.outcomes
        ]

    def status_of(self, event_id: str) -> str | None:
        """Return an event's status after its last pass, or None if not run."""
        found = [item.status for item in self.events if item.event.id == event_id]
        return found[-1] if found else None


class WebhookClient:
    """Sends signed deliveries to a gateway app and dispatches them.

    Not thread-safe; one per test.
    """

    def __init__(self, app: Flask, clock: ManualClock):
        self.app = app
        self.clock = clock
        self.http = app.test_client()
        self._connected: list[tuple[str, Callable[..., Any], Any]] = []

    @property
    def gateway(self) -> Gateway:
        """The app's :class:`~gateway.web.Gateway` (settings, store, dispatcher)."""
        return get_gateway(self.app)

    @property
    def settings(self) -> Settings:
        """The configuration the app runs with."""
        return self.gateway.settings

    @property
    def store(self) -> Store:
        """The app's event store."""
        return self.gateway.store

    def deliver(
        self,
        source: str,
        body: Mapping[str, Any] | bytes | str,
        *,
        event_type: str | None = None,
        event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
    ) -> TestResponse:
        """Sign ``body`` as ``source``'s provider would and post it.

        A mapping is encoded as JSON after the event type and id are put
        where the source's scheme reads them (``type``/``id`` in the
        body; ``event.type``/``event_id`` for slack); a body without an
        id gets a fresh one, so two deliveries are never taken for
        repeats. For ``github`` and ``shopify``, ``event_type`` is the
        ``X-GitHub-Event`` value (``issues``) or the topic
        (``orders/create``), and ``event_id`` the delivery header. Bytes
        or text are sent as they are.

        :param secret: sign with this instead of the source's secret, to
            test a refused delivery.
        :raises KeyError: the source is not configured.
        :returns: the gateway's answer (``.status_code``, ``.json``).
        """
        config = self.settings.sources.get(source)
        if config is None:
            raise KeyError(
                f"no source {source!r} is configured; configured: "
                + ", ".join(sorted(self.settings.sources))
            )
        scheme = config.scheme_name
        in_body = scheme not in HEADER_TYPED_SCHEMES
        if isinstance(body, Mapping):
            if in_body and event_id is None and not _has_id(scheme, body):
                event_id = f"evt_test_{uuid.uuid4().hex[:16]}"
            payload = prepare_body(
                scheme,
                body,
                event_type=event_type if in_body else None,
                event_id=event_id if in_body else None,
            )
            raw = encode_body(payload)
        else:
            raw = body.encode() if isinstance(body, str) else body
        delivery = sign_delivery(
            config,
            raw,
            now=self.clock(),
            event_type=event_type,
            delivery_id=None if in_body else event_id,
            secret=secret,
            headers=headers,
        )
        return self.http.post(
            f"/api/webhooks/{source}",
            data=delivery.body,
            headers=dict(delivery.headers),
        )

    def dispatch(self, *, retries: bool = False) -> DispatchResult:
        """Run every due handler now, in this thread; return what happened.

        With ``retries``, failed handlers are retried too: the clock is
        moved to each retry's due time until every event is done or
        dead-lettered (at most ``GATEWAY_MAX_RETRIES`` retries each).
        """
        gateway = self.gateway
        dispatcher = gateway.dispatcher
        results: list[DispatchedEvent] = []
        for _ in range(MAX_DISPATCH_ROUNDS):
            claimed = self.store.claim_due(
                dispatcher.owner,
                now=self.clock(),
                lease_seconds=dispatcher.lease_seconds,
                limit=CLAIM_BATCH,
            )
            if not claimed:
                due = self._next_retry_at() if retries else None
                if due is None:
                    break
                self.clock.now = max(self.clock.now, due)
                continue
            for stored in claimed:
                outcomes = dispatcher.dispatch(stored)
                after = self.store.get_event(stored.pk)
                status = after.status if after is not None else "gone"
                results.append(DispatchedEvent(stored.event, status, tuple(outcomes)))
        return DispatchResult(results)

    def on(
        self, event_type: str, *, source: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Like :func:`gateway.on`, but disconnected when the test ends."""

        def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
            sender = ANY if source is None else source
            signal(event_type).connect(function, sender=sender)
            self._connected.append((event_type, function, sender))
            return function

        return decorator

    def close(self) -> None:
        """Disconnect the handlers connected with :meth:`on`."""
        for event_type, function, sender in self._connected:
            signal(event_type).disconnect(function, sender=sender)
        self._connected.clear()

    def _next_retry_at(self) -> float | None:
        times = [
            run.next_attempt_at
            for stored in self.store.list_events(status="pending", limit=10_000)
            for run in self.store.handler_runs(stored.pk).values()
            if run.status == "retrying" and run.next_attempt_at is not None
        ]
        return min(times) if times else None


def gateway_test_config(data_dir: Path, **overrides: Any) -> dict[str, str]:
    """Return a configuration for a gateway under test, as variable names.

    A SQLite store and development files under ``data_dir``, no
    background dispatcher, a test secret for the default source, and a
    rate limit no test reaches; ``overrides`` win.
    """
    config = {
        "GATEWAY_ENV": "development",
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_DATABASE_URL": f"sqlite:///{data_dir / 'events.db'}",
        "GATEWAY_DISPATCHER": "0",
        "GATEWAY_LOG_FORMAT": "text",
        "INTEGRATION_SECRET_KEY": TEST_SECRET,
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_DEFAULT": TEST_RATE_LIMIT,
    }
    config.update({key: str(value) for key, value in overrides.items()})
    return config


@pytest.fixture
def gateway_config() -> dict[str, Any]:
    """Configuration overrides for the gateway under test (empty here).

    Override it in your ``conftest.py``, e.g. to return
    ``{"GATEWAY_CONFIG": "tests/sources.toml", "GATEWAY_HANDLERS":
    "acme_hooks.reminders"}``.
    """
    return {}


@pytest.fixture
def gateway_clock() -> ManualClock:
    """The clock of the gateway under test, standing at the current second."""
    return ManualClock()


@pytest.fixture
def gateway_app(
    gateway_config: dict[str, Any], gateway_clock: ManualClock, tmp_path: Path
) -> Iterator[Flask]:
    """A gateway app on a fresh store under ``tmp_path``."""
    config = gateway_test_config(tmp_path / "gateway", **gateway_config)
    app = create_app(config, clock=gateway_clock)
    app.testing = True
    yield app
    gateway = get_gateway(app)
    if gateway.refusals is not None:
        # Let queued refusals reach the store before it closes.
        gateway.refusals.flush()
    gateway.store.close()


@pytest.fixture
def webhook_client(
    gateway_app: Flask, gateway_clock: ManualClock
) -> Iterator[WebhookClient]:
    """A :class:`WebhookClient` on :func:`gateway_app`."""
    client = WebhookClient(gateway_app, gateway_clock)
    yield client
    client.close()


def _has_id(scheme: str, body: Mapping[str, Any]) -> bool:
    return bool(body.get("event_id" if scheme == "slack" else "id"))
