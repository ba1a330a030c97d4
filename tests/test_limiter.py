"""The rate limit on shared Redis storage, and what happens when Redis fails.

Each test uses a source name of its own, so its counters in the shared
Redis server cannot meet another run's; it deletes only those keys.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.limiter import is_storage_degraded
from tests.conftest import SECRET
from tests.helpers import deliver


def source_toml(name: str, rate_limit: str) -> str:
    return (
        f'[sources.{name}]\nscheme = "hmac-sha256"\nsecrets = ["{SECRET}"]\n'
        f'rate_limit = "{rate_limit}"\n'
    )


def post(app: Any, source: str, event_id: str) -> int:
    return int(deliver(app.test_client(), event_id, source=source).status_code)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_source(redis_url: str) -> Iterator[str]:
    """A source name unique to this test; its Redis keys are removed after."""
    import redis

    name = f"rl-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{name}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.redis
def test_two_app_instances_share_one_limit_on_redis(make_app, redis_url, own_source):
    toml = source_toml(own_source, "3 per minute")
    first = make_app(toml, RATELIMIT_STORAGE_URI=redis_url)
    second = make_app(toml, RATELIMIT_STORAGE_URI=redis_url)
    statuses = [
        post(app, own_source, f"evt_{n}") for n, app in enumerate([first, second] * 3)
    ]
    assert statuses == [202, 202, 202, 429, 429, 429]
    assert not is_storage_degraded(first.extensions["gateway"].limiter)


def test_unreachable_redis_keeps_accepting_with_a_warning(make_app, caplog):
    app = make_app(
        source_toml("integration", "100 per minute"),
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{closed_port()}",
    )
    with caplog.at_level(logging.WARNING, logger="gateway.limiter"):
        statuses = [post(app, "integration", f"evt_{n}") for n in range(3)]
    assert statuses == [202, 202, 202]
    limiter = app.extensions["gateway"].limiter
    assert is_storage_degraded(limiter)
    warnings = [r for r in caplog.records if r.name == "gateway.limiter"]
    assert [r.getMessage() for r in warnings] == [
        "rate-limit storage unreachable; counting in memory per worker"
        " and accepting deliveries"
    ]


def test_unreachable_redis_still_limits_each_worker_in_memory(make_app):
    app = make_app(
        source_toml("integration", "2 per minute"),
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{closed_port()}",
    )
    statuses = [post(app, "integration", f"evt_{n}") for n in range(3)]
    assert statuses == [202, 202, 429]


def test_readiness_reports_a_degraded_limiter_but_stays_ready(make_app):
    app = make_app(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{closed_port()}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["limiter"] == "degraded"
    assert response.json["checks"]["store"] == "ok"
