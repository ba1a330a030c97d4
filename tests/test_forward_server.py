"""The forwarding handler in a real gunicorn, loaded from the environment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.forward import webhook_id
from tests.conftest import STANDARD_SECRET
from tests.servers import GatewayServer, becomes_true
from tests.test_forward import Receiver

pytestmark = pytest.mark.server

RELAY_TIMEOUT_SECONDS = 20.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver(time.time)  # type: ignore[arg-type]
    endpoint.server.start()
    yield endpoint
    endpoint.server.stop()


@pytest.fixture
def server(tmp_path: Path, receiver: Receiver) -> Iterator[GatewayServer]:
    env = {
        "GATEWAY_HANDLERS": "handlers.forward",
        "GATEWAY_FORWARD_RULES": f"integration:message.*={receiver.url}",
        "GATEWAY_FORWARD_SECRET": STANDARD_SECRET,
        "GATEWAY_POLL_SECONDS": "0.2",
    }
    with GatewayServer(tmp_path, workers=1, env=env) as server:
        yield server
    assert STANDARD_SECRET not in server.log()


def test_delivered_webhook_is_relayed_signed_by_a_real_gateway(
    server: GatewayServer, receiver: Receiver
):
    answer = server.post_event(
        "evt_relay_1", data={"id": "msg_1", "status": "delivered"}
    )

    assert answer.status_code == 202
    assert becomes_true(lambda: bool(receiver.processed), timeout=RELAY_TIMEOUT_SECONDS)
    assert receiver.refused_signatures == 0
    relay_id = webhook_id("integration", "evt_relay_1")
    assert receiver.processed[relay_id]["data"]["data"]["id"] == "msg_1"
