"""Tests of the provider health check shown by /readyz."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.provider import CACHE_SECONDS, ProviderHealth
from tests.provider_api import FakeProvider, RecordedRequest, Reply


def healthy(request: RecordedRequest) -> Reply:
    if request.path == "/health":
        return Reply(200, {"status": "ok"})
    return Reply(404, {"error": "No such resource."})


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    server = FakeProvider().start()
    server.respond_with(healthy)
    yield server
    server.stop()


@pytest.fixture
def checked_app(make_app: Callable[..., Any], provider: FakeProvider) -> Any:
    return make_app(GATEWAY_READYZ_PROVIDER="1", INTEGRATION_API_URL=provider.url)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health_requests(provider: FakeProvider) -> int:
    return sum(1 for request in provider.requests if request.path == "/health")


def test_reachable_provider_is_reported_ok(checked_app):
    response = checked_app.test_client().get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["checks"]["provider"] == "ok"


def test_provider_check_calls_the_health_endpoint_without_credentials(
    make_app, provider
):
    app = make_app(
        GATEWAY_READYZ_PROVIDER="1",
        INTEGRATION_API_URL=provider.url,
        INTEGRATION_API_KEY="sk_test_never_sent_1234",
    )

    app.test_client().get("/readyz")

    (request,) = provider.requests
    assert (request.method, request.path) == ("GET", "/health")
    assert "authorization" not in request.headers


def test_dead_provider_is_degraded_but_gateway_stays_ready(make_app):
    app = make_app(
        GATEWAY_READYZ_PROVIDER="1",
        INTEGRATION_API_URL=f"http://127.0.0.1:{closed_port()}",
    )

    response = app.test_client().get("/readyz")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["provider"] == "degraded"


def test_failing_provider_is_degraded(checked_app, provider):
    provider.respond_with(lambda request: Reply(503, {"error": "maintenance"}))

    response = checked_app.test_client().get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["checks"]["provider"] == "degraded"


def test_slow_provider_is_degraded_after_the_timeout(provider):
    provider.reply(Reply(200, {"status": "ok"}, hold_seconds=3))
    checker = ProviderHealth(provider.url, timeout_seconds=0.2)

    assert checker.status() == "degraded"


def test_result_is_cached_between_readiness_probes(checked_app, provider, clock):
    client = checked_app.test_client()

    for _ in range(5):
        client.get("/readyz")
    clock.advance(CACHE_SECONDS - 1)
    client.get("/readyz")

    assert health_requests(provider) == 1


def test_provider_is_checked_again_once_the_cache_is_old(checked_app, provider, clock):
    client = checked_app.test_client()
    client.get("/readyz")
    provider.respond_with(lambda request: Reply(500))

    clock.advance(CACHE_SECONDS + 1)
    response = client.get("/readyz")

    assert health_requests(provider) == 2
    assert response.get_json()["checks"]["provider"] == "degraded"


def test_degraded_result_is_cached_too(checked_app, provider):
    provider.respond_with(lambda request: Reply(500))
    client = checked_app.test_client()

    for _ in range(5):
        client.get("/readyz")

    assert health_requests(provider) == 1


def test_provider_is_not_checked_unless_asked(make_app, provider):
    app = make_app(INTEGRATION_API_URL=provider.url)

    response = app.test_client().get("/readyz")

    assert "provider" not in response.get_json()["checks"]
    assert provider.requests == []


def test_provider_check_needs_the_api_url(make_app):
    with pytest.raises(ConfigError, match="INTEGRATION_API_URL"):
        make_app(GATEWAY_READYZ_PROVIDER="1")


def test_change_of_provider_state_is_logged_once(provider, caplog):
    caplog.set_level(logging.INFO, logger="gateway.provider")
    now = [0.0]
    checker = ProviderHealth(provider.url, clock=lambda: now[0])
    provider.respond_with(lambda request: Reply(500))

    for _ in range(3):
        checker.status()
        now[0] += CACHE_SECONDS + 1

    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["provider API degraded"]
