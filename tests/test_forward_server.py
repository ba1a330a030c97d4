"""The forwarding handler in a real gunicorn, loaded from the environment."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from handlers.forward import webhook_id
from tests.conftest import ROOT, SECRET, STANDARD_SECRET
from tests.test_forward import Receiver

pytestmark = pytest.mark.server

START_TIMEOUT_SECONDS = 30.0
RELAY_TIMEOUT_SECONDS = 20.0
POLL_SECONDS = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_SECONDS)
    return condition()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver(time.time)  # type: ignore[arg-type]
    endpoint.server.start()
    yield endpoint
    endpoint.server.stop()


@pytest.fixture
def gateway_url(tmp_path: Path, receiver: Receiver) -> Iterator[str]:
    port = free_port()
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "INTEGRATION_", "RATELIMIT_"))
    }
    environ.update(
        GATEWAY_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        GATEWAY_ACCESS_LOG="",
        GATEWAY_DATA_DIR=str(tmp_path / "var"),
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path / 'events.db'}",
        INTEGRATION_SECRET_KEY=SECRET,
        GATEWAY_HANDLERS="handlers.forward",
        GATEWAY_FORWARD_RULES=f"integration:message.*={receiver.url}",
        GATEWAY_FORWARD_SECRET=STANDARD_SECRET,
        GATEWAY_POLL_SECONDS="0.2",
    )
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app"],
            cwd=ROOT,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def is_up() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return process.poll() is not None

        assert wait_for(is_up, START_TIMEOUT_SECONDS), "gunicorn did not start"
        assert process.poll() is None, log_path.read_text()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert STANDARD_SECRET not in log_path.read_text()


def test_delivered_webhook_is_relayed_signed_by_a_real_gateway(
    gateway_url: str, receiver: Receiver
):
    body = json.dumps(
        {
            "id": "evt_relay_1",
            "type": "message.delivered",
            "data": {"id": "msg_1", "status": "delivered"},
        }
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()

    answer = requests.post(
        f"{gateway_url}/api/webhooks/integration",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Integration-Signature": signature,
        },
        timeout=10,
    )

    assert answer.status_code == 202
    assert wait_for(lambda: bool(receiver.processed), RELAY_TIMEOUT_SECONDS)
    assert receiver.refused_signatures == 0
    relay_id = webhook_id("integration", "evt_relay_1")
    assert receiver.processed[relay_id]["data"]["data"]["id"] == "msg_1"
