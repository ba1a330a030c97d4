"""Tests of clients that record sent messages in the gateway's store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from blinker import ANY

from gateway.dispatch import signal
from gateway.errors import ConfigError
from gateway.outbound import create_client, tracking_client
from gateway.store import Store
from handlers.message_status import track_message_status
from tests.provider_api import FakeProvider, Reply

API_KEY = "sk_test_outbound_4c1d"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def status_tracker() -> Iterator[None]:
    """Connect the shipped status handler, leaving it as found afterwards."""
    target = signal("message.*")
    was_connected = any(
        receiver is track_message_status for receiver in target.receivers.values()
    )
    target.connect(track_message_status, sender="integration")
    yield
    if not was_connected:
        target.disconnect(track_message_status, sender=ANY)


@pytest.fixture
def tracked_app(make_app: Callable[..., Any], provider: FakeProvider) -> Any:
    return make_app(INTEGRATION_API_KEY=API_KEY, INTEGRATION_API_URL=provider.url)


def post_status_event(
    app: Any, sign: Callable[..., dict[str, str]], status: str, message_id: str
) -> int:
    body = json.dumps(
        {
            "id": f"evt_{status}_{message_id}",
            "type": f"message.{status}",
            "data": {"id": message_id, "status": status},
        }
    ).encode()
    headers = sign("hmac-sha256", body)
    headers["Content-Type"] = "application/json"
    response = app.test_client().post(
        "/api/webhooks/integration", data=body, headers=headers
    )
    app.extensions["gateway"].dispatcher.run_until_idle()
    return int(response.status_code)


def test_send_through_gateway_client_records_sent(tracked_app):
    with create_client(tracked_app) as client:
        message = client.send_message("+15550001", "hello")

    store = tracked_app.extensions["gateway"].store
    assert store.message_status(message.id) == "sent"


def test_recorded_send_carries_provider_creation_time(tracked_app, clock):
    with create_client(tracked_app) as client:
        message = client.send_message("+15550001", "hello")

    (update,) = tracked_app.extensions["gateway"].store.message_history(message.id)
    assert update.status_at == message.created_at.timestamp()
    assert update.recorded_at == clock.now


def test_delivered_webhook_advances_a_sent_message(tracked_app, sign, status_tracker):
    with create_client(tracked_app) as client:
        message = client.send_message("+15550001", "hello")

    assert post_status_event(tracked_app, sign, "delivered", message.id) == 202

    store = tracked_app.extensions["gateway"].store
    assert store.message_status(message.id) == "delivered"


def test_late_sent_webhook_never_moves_a_delivered_message_back(
    tracked_app, sign, status_tracker
):
    with create_client(tracked_app) as client:
        message = client.send_message("+15550001", "hello")
    post_status_event(tracked_app, sign, "delivered", message.id)

    assert post_status_event(tracked_app, sign, "sent", message.id) == 202

    store = tracked_app.extensions["gateway"].store
    assert store.message_status(message.id) == "delivered"
    assert [update.status for update in store.message_history(message.id)] == [
        "sent",
        "delivered",
        "sent",
    ]


def test_send_recorded_after_its_delivery_keeps_it_delivered(
    store: Store, provider: FakeProvider
):
    provider.reply(Reply(201, {"id": "msg_fast", "status": "queued"}))
    store.record_message_status(
        "msg_fast",
        status="delivered",
        rank=3,
        status_at=None,
        event_id="evt_1",
        error=None,
        now=1.0,
    )

    with tracking_client(store, API_KEY, provider.url) as client:
        client.send_message("+15550001", "hello")

    assert store.message_status("msg_fast") == "delivered"


def test_failed_send_records_nothing(store: Store, provider: FakeProvider):
    provider.reply(Reply(400, {"error": "Bad recipient."}))

    with tracking_client(store, API_KEY, provider.url) as client:
        with pytest.raises(Exception, match="Bad recipient"):
            client.send_message("+15550001", "hello")

    assert store.message_counts() == {}


def test_callers_own_hook_runs_after_recording(store: Store, provider: FakeProvider):
    seen: list[str | None] = []

    def remember(message: Any) -> None:
        seen.append(store.message_status(message.id))

    with tracking_client(store, API_KEY, provider.url, on_sent=remember) as client:
        client.send_message("+15550001", "hello")

    assert seen == ["sent"]


def test_store_failure_does_not_fail_an_accepted_send(
    tmp_path, provider: FakeProvider, caplog
):
    class BrokenStore:
        def record_message_status(self, *args: Any, **kwargs: Any) -> bool:
            raise RuntimeError("disk full")

    caplog.set_level(logging.ERROR, logger="gateway.client")
    with tracking_client(BrokenStore(), API_KEY, provider.url) as client:  # type: ignore[arg-type]
        message = client.send_message("+15550001", "hello")

    assert message.id == "msg_1"
    assert "on_sent hook failed" in caplog.text


def test_gateway_client_needs_the_api_url(make_app):
    app = make_app(INTEGRATION_API_KEY=API_KEY)

    with pytest.raises(ConfigError, match="INTEGRATION_API_URL"):
        create_client(app)


def test_gateway_client_needs_the_api_key(make_app, provider):
    app = make_app(INTEGRATION_API_URL=provider.url)

    with pytest.raises(ConfigError, match="INTEGRATION_API_KEY"):
        create_client(app)
