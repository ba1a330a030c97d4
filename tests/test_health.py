"""Liveness and readiness probes: what they check and what they never say."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import pytest

from gateway.errors import StoreError
from gateway.store import PostgresStore

PROBE_SECRET = "probe-secret-value-1234"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (just released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_says_nothing_of_the_configuration(text: str, *secrets: str) -> None:
    assert "://" not in text
    assert "127.0.0.1" not in text
    assert "localhost" not in text
    assert socket.gethostname() not in text
    for secret in secrets:
        assert secret not in text


def enable_dispatcher(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dataclasses.replace(gateway.settings, dispatcher_enabled=True)
    monkeypatch.setattr(gateway, "settings", settings)


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_healthz_stays_ok_while_the_store_is_down(client, gateway, monkeypatch):
    def down() -> None:
        raise StoreError("down")

    monkeypatch.setattr(gateway.store, "ping", down)
    assert client.get("/healthz").status_code == 200


def test_readyz_is_ready_when_every_part_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ready",
        "checks": {"store": "ok", "limiter": "ok"},
    }


def test_readyz_names_the_store_when_it_is_down(client, gateway, monkeypatch):
    def down() -> None:
        raise StoreError("the SQLite store is unavailable: disk I/O error")

    monkeypatch.setattr(gateway.store, "ping", down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {"store": "unreachable", "limiter": "ok"}
    assert response.json["code"] == "unavailable"
    assert "store" in response.json["error"]
    assert "disk" not in response.get_data(as_text=True)


def test_readyz_names_the_store_when_the_sqlite_file_cannot_open(make_app, tmp_path):
    # A directory where the database file should be: SQLite cannot open it.
    folder = tmp_path / "not-a-file"
    folder.mkdir()
    app = make_app(GATEWAY_DATABASE_URL=f"sqlite:///{folder}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["store"] == "unreachable"
    assert str(tmp_path) not in response.get_data(as_text=True)


def test_readyz_names_an_unreachable_postgresql_store(client, gateway, monkeypatch):
    url = f"postgresql://gateway:{PROBE_SECRET}@127.0.0.1:{free_port()}/test"
    unreachable = PostgresStore(url, pool_size=1, timeout_seconds=0.5)
    monkeypatch.setattr(gateway, "store", unreachable)
    monkeypatch.setattr(gateway, "schema_ready", False)
    try:
        response = client.get("/readyz")
    finally:
        unreachable.close()
    assert response.status_code == 503
    assert response.json["checks"]["store"] == "unreachable"
    assert_says_nothing_of_the_configuration(
        response.get_data(as_text=True), PROBE_SECRET
    )


def test_readyz_names_an_unreachable_redis_limiter_storage_and_stays_ready(
    make_app,
):
    # Deliveries are still accepted while Redis is down (README, "Scaling
    # out"), so the instance stays in rotation and says it is degraded.
    port = free_port()
    app = make_app(RATELIMIT_STORAGE_URI=f"redis://:{PROBE_SECRET}@127.0.0.1:{port}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"store": "ok", "limiter": "degraded"}
    text = response.get_data(as_text=True)
    assert_says_nothing_of_the_configuration(text, PROBE_SECRET)
    assert str(port) not in text


def test_readyz_is_ready_with_a_reachable_redis_limiter_storage(make_app, redis_url):
    app = make_app(RATELIMIT_STORAGE_URI=redis_url)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["limiter"] == "ok"


def test_readyz_is_ready_with_a_reachable_postgresql_store(make_app, postgres_url):
    app = make_app(GATEWAY_DATABASE_URL=postgres_url)
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions["gateway"].store.close()
    assert response.status_code == 200
    assert response.json["checks"]["store"] == "ok"


def test_readyz_names_a_stopped_dispatcher(client, gateway, monkeypatch):
    enable_dispatcher(gateway, monkeypatch)
    # A dispatcher whose thread cannot be (re)started stays stopped.
    monkeypatch.setattr(gateway.dispatcher, "start", lambda: None)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["dispatcher"] == "stopped"
    assert "dispatcher" in response.json["error"]


def test_readyz_sees_a_running_dispatcher(client, gateway, monkeypatch):
    enable_dispatcher(gateway, monkeypatch)
    try:
        response = client.get("/readyz")
    finally:
        gateway.dispatcher.stop(timeout_seconds=5)
    assert response.status_code == 200
    assert response.json["checks"]["dispatcher"] == "ok"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_are_never_rate_limited(make_app, path):
    app = make_app(RATELIMIT_DEFAULT="1 per hour")
    client = app.test_client()
    statuses = {client.get(path).status_code for _ in range(5)}
    assert statuses == {200}


def test_probes_still_answer_once_the_webhook_limit_is_spent(make_app):
    app = make_app(RATELIMIT_DEFAULT="1 per hour")
    client = app.test_client()
    for _ in range(3):
        client.post("/api/webhooks/integration", data=b"{}")
    assert client.post("/api/webhooks/integration", data=b"{}").status_code == 429
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_probe_answers_hold_no_configured_secret(make_app):
    app = make_app(
        INTEGRATION_SECRET_KEY=PROBE_SECRET,
        INTEGRATION_API_KEY="api-key-for-probes-5678",
        INTEGRATION_API_URL="https://api.example.test/v1",
    )
    client = app.test_client()
    for path in ("/healthz", "/readyz"):
        assert_says_nothing_of_the_configuration(
            client.get(path).get_data(as_text=True),
            PROBE_SECRET,
            "api-key-for-probes-5678",
            "example.test",
        )
