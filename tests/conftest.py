"""Shared fixtures: apps, clients, stores, signing, clocks, services."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import create_app
from gateway.dispatch import GatewaySignal, signal
from gateway.schemes import get_scheme
from gateway.store import SQLiteStore, Store
from tests.helpers import SECRET

# The handler authors' kit (webhook_client...) and pytester, to test it.
pytest_plugins = ["pytester", "gateway.testing"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
STANDARD_SECRET = "whsec_dGVzdHNlY3JldC1zdGFuZGFyZC13ZWJob29rcy1rZXk="
FROZEN_AT = 1767225600.0
POSTGRES_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Every source the multi-scheme tests use, one per scheme, secret as above.
ALL_SOURCES_TOML = f"""
[sources.integration]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]

[sources.github]
scheme = "github"
secrets = ["{SECRET}"]

[sources.stripe]
scheme = "stripe"
secrets = ["{SECRET}"]

[sources.standard]
scheme = "standard"
secrets = ["{STANDARD_SECRET}"]

[sources.slack]
scheme = "slack"
secrets = ["{SECRET}"]

[sources.shopify]
scheme = "shopify"
secrets = ["{SECRET}"]
"""
SCHEME_SECRETS = {
    "hmac-sha256": SECRET,
    "github": SECRET,
    "stripe": SECRET,
    "standard": STANDARD_SECRET,
    "slack": SECRET,
    "shopify": SECRET,
}


class FrozenClock:
    """A clock for tests: returns a fixed time until advanced."""

    def __init__(self, now: float = FROZEN_AT):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every gateway variable so tests see only what they set."""
    prefixes = ("GATEWAY_", "INTEGRATION_", "RATELIMIT_")
    for name in list(os.environ):
        if name.startswith(prefixes) and not name.startswith("GATEWAY_TEST_"):
            monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def restore_log_handlers() -> Iterator[None]:
    """Drop the log handlers an app built in a test installed.

    ``create_app`` configures logging process-wide; without this, a test
    that inspects log records would depend on which tests ran before it.
    """
    loggers = [logging.getLogger(name) for name in ("", "gateway", "handlers")]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    yield
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen clock at 2026-01-01T00:00:00Z."""
    return FrozenClock()


@pytest.fixture
def make_app(tmp_path: Path, clock: FrozenClock) -> Callable[..., Any]:
    """Factory: an app on a fresh SQLite store, dispatcher not started.

    Keyword arguments override configuration variables by name;
    ``sources_toml`` writes a GATEWAY_CONFIG file with that text.
    """

    def factory(sources_toml: str | None = None, **overrides: Any) -> Any:
        config: dict[str, Any] = {
            "GATEWAY_DATA_DIR": str(tmp_path / "var"),
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
            "GATEWAY_DISPATCHER": "0",
            "INTEGRATION_SECRET_KEY": SECRET,
            "GATEWAY_LOG_FORMAT": "text",
        }
        if sources_toml is not None:
            path = tmp_path / "sources.toml"
            path.write_text(sources_toml)
            config["GATEWAY_CONFIG"] = str(path)
        config.update({key: str(value) for key, value in overrides.items()})
        app = create_app(config, clock=clock)
        app.testing = True
        return app

    return factory


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    """The gateway with every scheme configured as a source."""
    return make_app(ALL_SOURCES_TOML)


@pytest.fixture
def client(app: Any) -> Any:
    """A Flask test client of :func:`app`."""
    return app.test_client()


@pytest.fixture
def gateway(app: Any) -> Any:
    """The :class:`gateway.web.Gateway` of :func:`app`."""
    return app.extensions["gateway"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite store under ``tmp_path``."""
    opened = SQLiteStore(str(tmp_path / "store.db"))
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def sign(clock: FrozenClock) -> Callable[..., dict[str, str]]:
    """Factory: the headers a compliant sender of ``scheme`` would send.

    ``sign(scheme, body, secret=None, now=None, message_id=None)``; the
    secret defaults to the test secret of that scheme, the time to the
    frozen clock's.
    """

    def factory(
        scheme: str,
        body: bytes,
        secret: str | None = None,
        now: float | None = None,
        message_id: str | None = None,
    ) -> dict[str, str]:
        chosen = SCHEME_SECRETS[scheme] if secret is None else secret
        moment = int(clock.now if now is None else now)
        return get_scheme(scheme).sign(body, chosen, now=moment, message_id=message_id)

    return factory


@pytest.fixture
def connect() -> Iterator[Callable[..., Any]]:
    """Factory: connect a handler for one test, disconnected afterwards."""
    connected: list[tuple[GatewaySignal, Any, Any]] = []

    def factory(pattern: str, receiver: Any, source: Any = None) -> Any:
        from blinker import ANY

        sender = ANY if source is None else source
        target = signal(pattern)
        target.connect(receiver, sender=sender)
        connected.append((target, receiver, sender))
        return receiver

    yield factory
    for target, receiver, sender in connected:
        target.disconnect(receiver, sender=sender)


def example(name: str) -> bytes:
    """Return the bytes of an example delivery body in ``examples/``."""
    return (EXAMPLES / name).read_bytes()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is absent, except under CI where it must exist."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL with an empty gateway schema (dropped afterwards)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"gw_test_{os.getpid()}_{os.urandom(4).hex()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def redis_url() -> str:
    """The URL of the machine's Redis server (skipped when absent)."""
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def isolated_handlers() -> Iterator[None]:
    """Hide the handlers other tests' modules left connected; restore after.

    Handler modules stay imported, so their receivers stay connected for
    the rest of the run; a test that counts handler runs uses this.
    """
    from gateway.dispatch import iter_signals

    saved = []
    for _, item in iter_signals():
        saved.append(
            (
                item,
                dict(item.receivers),
                {key: set(value) for key, value in item._by_receiver.items()},
                {key: set(value) for key, value in item._by_sender.items()},
            )
        )
        item.receivers.clear()
        item._by_receiver.clear()
        item._by_sender.clear()
    yield
    for item, receivers, by_receiver, by_sender in saved:
        item.receivers.clear()
        item.receivers.update(receivers)
        item._by_receiver.clear()
        item._by_receiver.update(by_receiver)
        item._by_sender.clear()
        item._by_sender.update(by_sender)
