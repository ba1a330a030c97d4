"""Tests of the forwarding handler against a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import DoNotRetry, Event
from gateway.dispatch import Dispatcher
from gateway.errors import ConfigError, SignatureError
from gateway.schemes import get_scheme
from gateway.store import Store
from handlers.forward import (
    Forwarder,
    ForwardFailed,
    Route,
    parse_routes,
    webhook_id,
)
from tests.conftest import FROZEN_AT, ROOT, STANDARD_SECRET, FrozenClock
from tests.provider_api import FakeProvider, RecordedRequest, Reply

OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LW9mLXNpeHRlZW4tYnl0ZXMh"
TOLERANCE_SECONDS = 300
# Longer than any backoff the dispatcher can choose (8 s + 20% jitter).
PAST_ANY_BACKOFF_SECONDS = 60.0


class Receiver:
    """An internal endpoint that checks relays the way the gateway would.

    Every request's Standard Webhooks signature is verified with the
    gateway's own ``standard`` scheme; a bad one is answered 401. Then
    the statuses queued in ``failures`` are answered, one per request,
    after the relay is processed (a receiver that did the work but could
    not say so). A relay whose ``webhook-id`` was processed before is
    answered 200 and not processed again.
    """

    def __init__(self, clock: FrozenClock, secret: str = STANDARD_SECRET) -> None:
        self.clock = clock
        self.keys = (get_scheme("standard").load_key(secret, "#0"),)
        self.failures: deque[int] = deque()
        self.processed: dict[str, Any] = {}
        self.repeats = 0
        self.refused_signatures = 0
        self.server = FakeProvider()
        self.server.respond_with(self._answer)

    @property
    def url(self) -> str:
        return self.server.url + "/hooks"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    def _answer(self, request: RecordedRequest) -> Reply:
        try:
            get_scheme("standard").verify(
                request.body,
                request.headers,
                self.keys,
                now=self.clock(),
                tolerance_seconds=TOLERANCE_SECONDS,
            )
        except SignatureError:
            self.refused_signatures += 1
            return Reply(401, {"error": "bad signature"})
        relay_id = request.headers["webhook-id"]
        if relay_id in self.processed:
            self.repeats += 1
        else:
            self.processed[relay_id] = request.json()
        if self.failures:
            return Reply(self.failures.popleft(), {"error": "try again"})
        return Reply(204)


@pytest.fixture
def receiver(clock: FrozenClock) -> Iterator[Receiver]:
    endpoint = Receiver(clock)
    endpoint.server.start()
    yield endpoint
    endpoint.server.stop()


@pytest.fixture
def make_forwarder(
    clock: FrozenClock, connect: Callable[..., Any]
) -> Iterator[Callable[..., Forwarder]]:
    """Build forwarders whose handlers are connected for this test only."""
    built: list[Forwarder] = []

    def build(*routes: Route, secret: str = STANDARD_SECRET, **options: Any):
        options.setdefault("clock", clock)
        options.setdefault("timeout_seconds", 2.0)
        forwarder = Forwarder(routes, secret, **options)
        for relay in forwarder.relays:
            connect(relay.route.pattern, relay, source=relay.route.source)
        built.append(forwarder)
        return forwarder

    yield build
    for forwarder in built:
        forwarder.close()


@pytest.fixture
def dispatcher(store: Store, clock: FrozenClock) -> Dispatcher:
    return Dispatcher(store, max_retries=3, retry_base_seconds=2.0, clock=clock)


def store_event(
    store: Store,
    clock: FrozenClock,
    event_type: str = "message.delivered",
    event_id: str = "evt_1",
    source: str = "integration",
) -> int:
    event = Event(
        id=event_id,
        type=event_type,
        source=source,
        received_at=datetime.fromtimestamp(clock.now, tz=UTC),
        payload={"id": event_id, "type": event_type, "data": {"id": "msg_1"}},
    )
    assert store.insert_event(event, "#0")
    stored = store.find_event(event_id, source)
    assert stored is not None
    return stored.pk


def dispatch_with_retries(
    dispatcher: Dispatcher, clock: FrozenClock, passes: int = 6
) -> None:
    """Dispatch, then let every scheduled retry come due, a bounded number of times."""
    dispatcher.run_until_idle()
    for _ in range(passes):
        clock.advance(PAST_ANY_BACKOFF_SECONDS)
        dispatcher.run_until_idle()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def forward_runs(store: Store, pk: int) -> dict[str, Any]:
    """The forwarding handlers' runs of an event.

    Handler modules other tests import stay connected, so they are left out.
    """
    return {
        name: run
        for name, run in store.handler_runs(pk).items()
        if name.startswith("handlers.forward.")
    }


def only_run(store: Store, pk: int) -> Any:
    (run,) = forward_runs(store, pk).values()
    return run


# Relaying and signing


def test_relay_reaches_receiver_with_a_valid_signature(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    pk = store_event(store, clock)

    dispatcher.run_until_idle()

    assert receiver.refused_signatures == 0
    assert list(receiver.processed) == [webhook_id("integration", "evt_1")]
    assert only_run(store, pk).status == "ok"


def test_relay_body_carries_event_and_original_body(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    store_event(store, clock)

    dispatcher.run_until_idle()

    (relayed,) = receiver.processed.values()
    assert relayed == {
        "id": webhook_id("integration", "evt_1"),
        "type": "message.delivered",
        "timestamp": "2026-01-01T00:00:00Z",
        "source": "integration",
        "event_id": "evt_1",
        "data": {
            "id": "evt_1",
            "type": "message.delivered",
            "data": {"id": "msg_1"},
        },
    }


def test_relay_signed_with_another_secret_is_refused_by_receiver(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url), secret=OTHER_SECRET)
    pk = store_event(store, clock)

    dispatcher.run_until_idle()

    assert receiver.refused_signatures == 1
    assert receiver.processed == {}
    assert only_run(store, pk).status == "dead"


def test_relay_timestamp_is_the_time_of_the_attempt(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    receiver.failures.append(503)
    store_event(store, clock)

    dispatch_with_retries(dispatcher, clock, passes=1)

    stamps = [
        int(request.headers["webhook-timestamp"]) for request in receiver.requests
    ]
    assert stamps == [int(FROZEN_AT), int(FROZEN_AT + PAST_ANY_BACKOFF_SECONDS)]
    assert receiver.refused_signatures == 0


def test_only_matching_types_and_sources_are_relayed(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url, source="integration"))
    store_event(store, clock, "invoice.paid", "evt_a")
    store_event(store, clock, "message.read", "evt_b", source="standard")
    store_event(store, clock, "message.read", "evt_c")

    dispatcher.run_until_idle()

    assert [body["event_id"] for body in receiver.processed.values()] == ["evt_c"]


def test_each_route_is_its_own_handler(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(
        Route("message.*", receiver.url),
        Route("message.delivered", f"http://127.0.0.1:{closed_port()}/down"),
    )
    pk = store_event(store, clock)

    dispatcher.run_until_idle()

    statuses = {name: run.status for name, run in forward_runs(store, pk).items()}
    assert sorted(statuses.values()) == ["ok", "retrying"]
    assert len(receiver.processed) == 1


# Failures, retries and dead letters


def test_receiver_failing_then_recovering_is_retried_without_duplicates(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    receiver.failures.extend([500, 500])
    pk = store_event(store, clock)

    dispatch_with_retries(dispatcher, clock)

    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert len(receiver.requests) == 3
    assert ids == {webhook_id("integration", "evt_1")}
    assert len(receiver.processed) == 1
    assert receiver.repeats == 2
    run = only_run(store, pk)
    assert (run.status, run.attempts) == ("ok", 3)


def test_relay_body_is_identical_on_every_retry(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    receiver.failures.append(502)
    store_event(store, clock)

    dispatch_with_retries(dispatcher, clock)

    first, second = receiver.requests
    assert first.body == second.body


@pytest.mark.parametrize("status", [408, 429, 503])
def test_retryable_answers_are_retried(
    make_forwarder, receiver, store, clock, dispatcher, status
):
    make_forwarder(Route("message.*", receiver.url))
    receiver.failures.append(status)
    pk = store_event(store, clock)

    dispatcher.run_until_idle()

    run = only_run(store, pk)
    assert run.status == "retrying"
    assert f"HTTP {status}" in run.last_error


def test_endpoint_down_is_dead_lettered_after_the_last_retry(
    make_forwarder, store, clock, dispatcher
):
    make_forwarder(Route("message.*", f"http://127.0.0.1:{closed_port()}/hooks"))
    pk = store_event(store, clock)

    dispatch_with_retries(dispatcher, clock)

    run = only_run(store, pk)
    assert (run.status, run.attempts) == ("dead", 4)
    assert "could not be reached" in run.last_error
    (dead,) = [
        letter
        for letter in store.dead_letters()
        if letter.handler.startswith("handlers.forward.")
    ]
    assert dead.handler.startswith("handlers.forward.Relay[message.*->")


def test_client_error_is_dead_lettered_at_once(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    receiver.failures.append(400)
    pk = store_event(store, clock)

    dispatch_with_retries(dispatcher, clock)

    run = only_run(store, pk)
    assert (run.status, run.attempts) == ("dead", 1)
    assert len(receiver.requests) == 1


def test_redirect_is_not_followed_and_is_retried(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    receiver.server.reply(Reply(307, headers={"Location": "http://127.0.0.1:1/"}))
    pk = store_event(store, clock)

    dispatcher.run_until_idle()

    assert only_run(store, pk).status == "retrying"
    assert len(receiver.requests) == 1


def test_slow_receiver_times_out_and_is_retried(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url), timeout_seconds=0.2)
    receiver.server.reply(Reply(204, hold_seconds=3))
    pk = store_event(store, clock)

    dispatcher.run_until_idle()

    run = only_run(store, pk)
    assert run.status == "retrying"
    assert "did not answer within 0.2 s" in run.last_error


def test_forward_raises_do_not_retry_for_a_refusal(clock, receiver):
    forwarder = Forwarder([], STANDARD_SECRET, clock=clock)
    receiver.failures.append(422)
    event = Event("evt_1", "x", "integration", datetime.now(UTC), {"type": "x"})

    with pytest.raises(DoNotRetry, match="HTTP 422"):
        forwarder.forward(Route("x", receiver.url), "integration", event)
    forwarder.close()


def test_failure_message_never_holds_the_url_query(clock):
    forwarder = Forwarder([], STANDARD_SECRET, clock=clock)
    route = Route("x", f"http://127.0.0.1:{closed_port()}/hooks?token=hush")
    event = Event("evt_1", "x", "integration", datetime.now(UTC), {"type": "x"})

    with pytest.raises(ForwardFailed) as caught:
        forwarder.forward(route, "integration", event)
    forwarder.close()

    assert "hush" not in str(caught.value)
    assert caught.value.__suppress_context__


def test_replayed_event_keeps_its_webhook_id(
    make_forwarder, receiver, store, clock, dispatcher
):
    make_forwarder(Route("message.*", receiver.url))
    pk = store_event(store, clock)
    dispatcher.run_until_idle()

    store.requeue([pk], now=clock(), include_succeeded=True)
    dispatcher.run_until_idle()

    assert len(receiver.requests) == 2
    assert receiver.repeats == 1


# Configuration


def test_routes_are_parsed_with_optional_source():
    routes = parse_routes(
        "message.*=http://127.0.0.1:9000/hooks, "
        "integration:invoice.paid=https://billing.internal/in?x=1"
    )

    assert routes == (
        Route("message.*", "http://127.0.0.1:9000/hooks"),
        Route("invoice.paid", "https://billing.internal/in?x=1", "integration"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "message.*",
        "=http://127.0.0.1/",
        "message.*=ftp://127.0.0.1/",
        "message.*=not a url",
        "mess*age=http://127.0.0.1/",
        "a=http://user:pw@127.0.0.1/",
        "a=http://127.0.0.1/,a=http://127.0.0.1/",
    ],
)
def test_bad_routes_are_refused(text):
    with pytest.raises(ConfigError, match="GATEWAY_FORWARD_RULES route"):
        parse_routes(text)


def test_route_label_drops_the_query():
    route = Route("x", "http://127.0.0.1:9000/hooks?token=hush", "integration")

    assert route.label == "integration:x->http://127.0.0.1:9000/hooks"


def test_webhook_id_depends_on_source_and_event_id():
    assert webhook_id("a", "evt_1") == webhook_id("a", "evt_1")
    assert webhook_id("a", "evt_1") != webhook_id("b", "evt_1")
    assert webhook_id("a", "evt_1") != webhook_id("a", "evt_2")


def test_no_routes_means_no_forwarder():
    assert Forwarder.from_environment({}) is None


def test_secret_must_be_a_standard_webhooks_secret():
    with pytest.raises(ConfigError, match="GATEWAY_FORWARD_SECRET"):
        Forwarder.from_environment(
            {
                "GATEWAY_FORWARD_RULES": "x=http://127.0.0.1/",
                "GATEWAY_FORWARD_SECRET": "plain-text-secret",
            }
        )


def test_production_refuses_to_forward_without_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="GATEWAY_FORWARD_SECRET is not set"):
        Forwarder.from_environment(
            {
                "GATEWAY_ENV": "production",
                "GATEWAY_FORWARD_RULES": "x=http://127.0.0.1/",
                "GATEWAY_DATA_DIR": str(tmp_path),
            }
        )
    assert not (tmp_path / "dev-forward-secret").exists()


def test_development_secret_is_generated_once_and_kept(tmp_path, capsys, caplog):
    environ = {
        "GATEWAY_FORWARD_RULES": "x=http://127.0.0.1/",
        "GATEWAY_DATA_DIR": str(tmp_path),
    }
    caplog.set_level(logging.DEBUG)

    Forwarder.from_environment(environ).close()
    Forwarder.from_environment(environ).close()

    secret = (tmp_path / "dev-forward-secret").read_text().strip()
    assert secret.startswith("whsec_")
    get_scheme("standard").load_key(secret, "#0")
    assert capsys.readouterr().err.count(secret) == 1
    assert secret not in caplog.text
    assert oct((tmp_path / "dev-forward-secret").stat().st_mode & 0o777) == "0o600"


def test_timeout_is_read_from_the_environment():
    forwarder = Forwarder.from_environment(
        {
            "GATEWAY_FORWARD_RULES": "x=http://127.0.0.1/",
            "GATEWAY_FORWARD_SECRET": STANDARD_SECRET,
            "GATEWAY_FORWARD_TIMEOUT_SECONDS": "1.5",
        }
    )

    assert forwarder.timeout_seconds == 1.5
    forwarder.close()


def test_secret_never_appears_in_logs_or_repr(
    make_forwarder, receiver, store, clock, dispatcher, caplog
):
    caplog.set_level(logging.DEBUG)
    forwarder = make_forwarder(Route("message.*", receiver.url))
    receiver.failures.append(500)
    store_event(store, clock)

    dispatch_with_retries(dispatcher, clock, passes=1)

    assert STANDARD_SECRET not in caplog.text
    assert STANDARD_SECRET not in repr(forwarder)
    assert "event forwarded" in caplog.text


def test_module_registers_routes_from_the_environment(tmp_path):
    # A fresh interpreter, so the import-time registration of this test
    # does not leak into the other tests' handlers.
    script = (
        "import json, handlers.forward\n"
        "from gateway.dispatch import handlers_by_pattern\n"
        "print(json.dumps(handlers_by_pattern()))\n"
    )
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "INTEGRATION_"))
    }
    environ.update(
        GATEWAY_FORWARD_RULES=(
            "integration:message.*=http://127.0.0.1:9/a,invoice.paid=http://127.0.0.1:9/b"
        ),
        GATEWAY_FORWARD_SECRET=STANDARD_SECRET,
        GATEWAY_DATA_DIR=str(tmp_path),
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert json.loads(result.stdout) == {
        "invoice.paid": ["handlers.forward.Relay[invoice.paid->http://127.0.0.1:9/b]"],
        "message.*": [
            "handlers.forward.Relay[integration:message.*->http://127.0.0.1:9/a]"
        ],
    }
    assert STANDARD_SECRET not in result.stdout + result.stderr


def test_bad_rules_stop_the_import_with_a_clear_message(tmp_path):
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "INTEGRATION_"))
    }
    environ["GATEWAY_FORWARD_RULES"] = "message.*"

    result = subprocess.run(
        [sys.executable, "-c", "import handlers.forward"],
        cwd=Path(ROOT),
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "GATEWAY_FORWARD_RULES route 1" in result.stderr
