"""Limits, backpressure and the refusal log on a real two-worker gunicorn."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from gateway.cli_refusals import refusals
from gateway.refusals import RefusalLog
from gateway.store import open_store
from tests.helpers import SECRET, event_body, signed_headers
from tests.servers import GatewayServer, wait_until

pytestmark = pytest.mark.server


def post(
    server: GatewayServer, event_id: str, *, forged: bool = False, ip: str | None = None
) -> requests.Response:
    """POST a ``ping`` event, signed with a wrong secret when ``forged``."""
    body = event_body(event_id)
    extra = {"X-Forwarded-For": ip} if ip else {}
    headers = signed_headers(body, "forged" if forged else SECRET, **extra)
    return server.post("integration", body, headers)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """Factory: start a two-worker gunicorn with these variables."""
    with ExitStack() as started:

        def start(**env: str) -> GatewayServer:
            return started.enter_context(GatewayServer(tmp_path, workers=2, env=env))

        yield start


def random_ip() -> str:
    # Fresh addresses per run, so counts left in the shared Redis by an
    # earlier run (or another test) cannot touch this one.
    return (
        f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    )


def test_forgery_flood_is_cut_off_across_workers_while_a_burst_passes(
    server_factory, redis_url
):
    server = server_factory(
        RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_DEFAULT="1000 per minute",
        GATEWAY_TRUSTED_PROXIES="1",
    )
    attacker, provider = random_ip(), random_ip()
    forged = [post(server, f"f{n}", forged=True, ip=attacker) for n in range(30)]
    burst = [post(server, f"ok{n}", ip=provider) for n in range(40)]
    assert [answer.status_code for answer in forged] == [401] * 20 + [429] * 10
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in forged[20:])
    assert [answer.status_code for answer in burst] == [202] * 40


def test_ip_limit_429_carries_retry_after_on_gunicorn(server_factory, redis_url):
    server = server_factory(
        RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_DEFAULT="5 per minute",
        GATEWAY_TRUSTED_PROXIES="1",
    )
    client_ip = random_ip()
    answers = [post(server, f"e{n}", ip=client_ip) for n in range(8)]
    assert [answer.status_code for answer in answers] == [202] * 5 + [429] * 3
    for answer in answers[5:]:
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["code"] == "rate_limited"


def test_backpressure_on_gunicorn_refuses_and_loses_nothing(server_factory):
    server = server_factory(
        GATEWAY_DISPATCHER="0",
        GATEWAY_BACKLOG_HIGH_WATER="3",
        RATELIMIT_DEFAULT="1000 per minute",
    )
    accepted: list[str] = []

    def refused_once() -> Any:
        event_id = f"e{len(accepted)}-{time.monotonic_ns()}"
        answer = post(server, event_id)
        if answer.status_code == 202:
            accepted.append(event_id)
            return None
        return [answer]  # a Response is false when its status is an error

    [refusal] = wait_until(refused_once, timeout=20, what="a backpressure 503")
    assert refusal.status_code == 503
    assert refusal.json()["code"] == "unavailable"
    assert int(refusal.headers["Retry-After"]) > 0

    def not_ready() -> list[Any]:
        answer = server.get("/readyz", timeout=5)
        return [answer] if answer.status_code == 503 else []

    [ready] = wait_until(not_ready, timeout=10, what="readiness to report the backlog")
    assert "over the high-water mark of 3" in ready.json()["checks"]["backlog"]
    store = open_store(server.database_url)
    try:
        stored = {item.event.id for item in store.list_events(limit=1000)}
    finally:
        store.close()
    assert stored == set(accepted)
    assert len(accepted) >= 4


def test_refusals_from_both_workers_are_recorded_and_listed(server_factory, tmp_path):
    server = server_factory(RATELIMIT_DEFAULT="1000 per minute")
    answers = [post(server, f"f{n}", forged=True) for n in range(6)]
    request_ids = {answer.headers["X-Request-Id"] for answer in answers}
    store = open_store(server.database_url)
    try:
        log = RefusalLog(store)
        found = wait_until(
            lambda: len(items := log.list()) == 6 and items,
            timeout=10,
            what="six recorded refusals",
        )
    finally:
        store.close()
    assert {item.request_id for item in found} == request_ids
    assert {item.code for item in found} == {"invalid_signature"}
    result = CliRunner().invoke(
        refusals,
        ["list"],
        env={"GATEWAY_DATABASE_URL": server.database_url},
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("invalid_signature") == 6
    assert SECRET not in result.output


def test_secret_matches_add_up_across_workers_on_metrics(server_factory):
    server = server_factory(RATELIMIT_DEFAULT="1000 per minute")
    answers = [post(server, f"m{n}") for n in range(8)]
    assert [answer.status_code for answer in answers] == [202] * 8
    text = server.get("/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('gateway_secret_matches_total{key_id="#0"')
    )
    assert float(line.rsplit(" ", 1)[1]) == 8
