"""The handler authors' test kit: signed deliveries and synchronous dispatch."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import DoNotRetry, Event
from gateway.dispatch import signal
from gateway.testing import ManualClock, WebhookClient

from .conftest import ALL_SOURCES_TOML, ROOT


@pytest.fixture
def gateway_config(tmp_path: Any) -> dict[str, Any]:
    """Every scheme as a source, as a handler author's conftest would set."""
    path = tmp_path / "sources.toml"
    path.write_text(ALL_SOURCES_TOML)
    return {"GATEWAY_CONFIG": str(path)}


def test_a_delivered_event_reaches_its_handler_on_dispatch(
    webhook_client: WebhookClient,
) -> None:
    seen: list[Event] = []

    @webhook_client.on("message.delivered", source="integration")
    def remember(source: str, event: Event) -> None:
        seen.append(event)

    response = webhook_client.deliver(
        "integration", {"data": {"id": "msg_1"}}, event_type="message.delivered"
    )
    assert response.status_code == 202
    assert seen == []
    result = webhook_client.dispatch()
    [outcome] = result.for_handler(remember)
    assert outcome.status == "ok"
    assert seen[0].data == {"id": "msg_1"}
    assert result.status_of(seen[0].id) == "done"


@pytest.mark.parametrize(
    ("source", "body", "event_type", "expected_type"),
    [
        ("integration", {"data": {}}, "message.read", "message.read"),
        ("github", {"action": "opened"}, "issues", "issues.opened"),
        ("stripe", {"data": {"object": {}}}, "invoice.paid", "invoice.paid"),
        ("standard", {"data": {}}, "appointment.booked", "appointment.booked"),
        ("slack", {"team_id": "T1"}, "app_mention", "app_mention"),
        ("shopify", {"id": 7}, "orders/create", "orders/create"),
    ],
)
def test_deliver_signs_for_every_scheme(
    webhook_client: WebhookClient,
    source: str,
    body: dict[str, Any],
    event_type: str,
    expected_type: str,
) -> None:
    response = webhook_client.deliver(source, body, event_type=event_type)
    assert response.status_code == 202, response.json
    [stored] = webhook_client.store.list_events(source=source)
    assert stored.event.type == expected_type


def test_deliver_with_another_secret_is_refused_and_nothing_runs(
    webhook_client: WebhookClient,
) -> None:
    response = webhook_client.deliver(
        "stripe", {"type": "invoice.paid"}, secret="not-the-secret"
    )
    assert response.status_code == 401
    assert response.json["code"] == "invalid_signature"
    assert len(webhook_client.dispatch()) == 0


def test_two_bodies_without_ids_are_two_events_not_a_repeat(
    webhook_client: WebhookClient,
) -> None:
    first = webhook_client.deliver("integration", {"type": "ping"})
    second = webhook_client.deliver("integration", {"type": "ping"})
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json["id"] != second.json["id"]


def test_given_bytes_are_sent_unchanged(webhook_client: WebhookClient) -> None:
    body = (ROOT / "examples" / "message.sent.json").read_bytes()
    response = webhook_client.deliver("integration", body)
    assert response.status_code == 202
    assert webhook_client.deliver("integration", body).json["duplicate"] is True


def test_a_failing_handler_is_retried_until_dead_lettered(
    webhook_client: WebhookClient, gateway_clock: ManualClock
) -> None:
    started = gateway_clock.now

    @webhook_client.on("order.paid")
    def flaky(source: str, event: Event) -> None:
        raise RuntimeError("payment service down")

    webhook_client.deliver("integration", {"id": "evt_9"}, event_type="order.paid")
    first = webhook_client.dispatch()
    assert [o.status for o in first.for_handler(flaky)] == ["retrying"]
    assert first.status_of("evt_9") == "pending"
    rest = webhook_client.dispatch(retries=True)
    assert [o.status for o in rest.for_handler(flaky)] == ["retrying"] * 2 + ["dead"]
    assert rest.status_of("evt_9") == "dead"
    assert rest.for_event("evt_9")[-1].error == "RuntimeError: payment service down"
    assert gateway_clock.now > started


def test_do_not_retry_goes_straight_to_the_dead_letters(
    webhook_client: WebhookClient,
) -> None:
    @webhook_client.on("message.failed")
    def strict(source: str, event: Event) -> None:
        raise DoNotRetry("no message id")

    webhook_client.deliver("integration", {"data": {}}, event_type="message.failed")
    result = webhook_client.dispatch(retries=True)
    assert [o.status for o in result.for_handler(strict)] == ["dead"]
    assert "strict" in repr(result)


def test_handlers_connected_by_the_client_are_disconnected_on_close(
    gateway_app: Any, gateway_clock: ManualClock
) -> None:
    client = WebhookClient(gateway_app, gateway_clock)

    @client.on("kit.closing")
    def temporary(source: str, event: Event) -> None:
        return None

    assert temporary in signal("kit.closing").receivers.values()
    client.close()
    assert temporary not in signal("kit.closing").receivers.values()


def test_deliver_to_an_unknown_source_names_the_configured_ones(
    webhook_client: WebhookClient,
) -> None:
    with pytest.raises(KeyError, match="github"):
        webhook_client.deliver("nowhere", {"type": "x"})


HANDLER_MODULE = """
from gateway import DoNotRetry, Event, on

FLAGGED = []


@on("message.failed", source="integration")
def flag_unreachable_owner(source: str, event: Event) -> None:
    message = event.data or {}
    if "id" not in message:
        raise DoNotRetry("no message id")
    FLAGGED.append(message["id"])
"""

HANDLER_TESTS = """
import pytest

from acme_reminders import FLAGGED, flag_unreachable_owner


@pytest.fixture
def gateway_config():
    return {"GATEWAY_HANDLERS": "acme_reminders"}


def test_failed_message_flags_the_owner(webhook_client):
    webhook_client.deliver(
        "integration", {"data": {"id": "msg_1"}}, event_type="message.failed"
    )
    result = webhook_client.dispatch()
    assert [o.status for o in result.for_handler(flag_unreachable_owner)] == ["ok"]
    assert FLAGGED == ["msg_1"]


def test_failure_without_a_message_id_is_dead_lettered(webhook_client):
    webhook_client.deliver("integration", {"data": {}}, event_type="message.failed")
    result = webhook_client.dispatch()
    [outcome] = result.for_handler(flag_unreachable_owner)
    assert outcome.status == "dead"
    assert outcome.error == "DoNotRetry: no message id"
"""


def test_the_plugin_serves_a_handler_authors_own_test_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{pytester.path}")
    pytester.makepyfile(acme_reminders=HANDLER_MODULE, test_reminders=HANDLER_TESTS)
    pytester.makeconftest('pytest_plugins = ["gateway.testing"]\n')
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
