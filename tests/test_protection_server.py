"""Limits, backpressure and the refusal log on a real two-worker gunicorn."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from gateway.cli_refusals import refusals
from gateway.refusals import RefusalLog
from gateway.store import SQLiteStore
from tests.conftest import ROOT, SECRET

pytestmark = pytest.mark.server
START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Server:
    """gunicorn with two workers on a free loopback port, stopped on exit."""

    def __init__(self, folder: Path, env: Mapping[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.database = folder / "events.db"
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("GATEWAY_", "INTEGRATION_", "RATELIMIT_"))
            or name.startswith("GATEWAY_TEST_")
        }
        self.env.update(
            {
                "GATEWAY_BIND": f"127.0.0.1:{self.port}",
                "WEB_CONCURRENCY": "2",
                "GATEWAY_DATA_DIR": str(folder / "var"),
                "GATEWAY_DATABASE_URL": f"sqlite:///{self.database}",
                "INTEGRATION_SECRET_KEY": SECRET,
                "GATEWAY_ACCESS_LOG": "",
                **env,
            }
        )
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        log = open(self.folder / "gunicorn.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_until(self._healthy, timeout=START_TIMEOUT_SECONDS, what="gunicorn")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + self.log())
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return (self.folder / "gunicorn.log").read_text(errors="replace")

    def post(self, event_id: str, *, forged: bool = False, ip: str | None = None):
        body = json.dumps({"id": event_id, "type": "ping"}).encode()
        secret = "forged" if forged else SECRET
        headers = {
            "Content-Type": "application/json",
            "X-Integration-Signature": hmac.new(
                secret.encode(), body, hashlib.sha256
            ).hexdigest(),
        }
        if ip:
            headers["X-Forwarded-For"] = ip
        return requests.post(
            self.url + "/api/webhooks/integration",
            data=body,
            headers=headers,
            timeout=10,
        )


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(tmp_path, env).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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
    forged = [server.post(f"f{n}", forged=True, ip=attacker) for n in range(30)]
    burst = [server.post(f"ok{n}", ip=provider) for n in range(40)]
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
    answers = [server.post(f"e{n}", ip=client_ip) for n in range(8)]
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
        answer = server.post(event_id)
        if answer.status_code == 202:
            accepted.append(event_id)
            return None
        return [answer]  # a Response is false when its status is an error

    [refusal] = wait_until(refused_once, timeout=20, what="a backpressure 503")
    assert refusal.status_code == 503
    assert refusal.json()["code"] == "unavailable"
    assert int(refusal.headers["Retry-After"]) > 0

    def not_ready() -> list[Any]:
        answer = requests.get(server.url + "/readyz", timeout=5)
        return [answer] if answer.status_code == 503 else []

    [ready] = wait_until(not_ready, timeout=10, what="readiness to report the backlog")
    assert "over the high-water mark of 3" in ready.json()["checks"]["backlog"]
    store = SQLiteStore(str(server.database))
    try:
        stored = {item.event.id for item in store.list_events(limit=1000)}
    finally:
        store.close()
    assert stored == set(accepted)
    assert len(accepted) >= 4


def test_refusals_from_both_workers_are_recorded_and_listed(server_factory, tmp_path):
    server = server_factory(RATELIMIT_DEFAULT="1000 per minute")
    answers = [server.post(f"f{n}", forged=True) for n in range(6)]
    request_ids = {answer.headers["X-Request-Id"] for answer in answers}
    store = SQLiteStore(str(server.database))
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
        env={"GATEWAY_DATABASE_URL": f"sqlite:///{server.database}"},
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("invalid_signature") == 6
    assert SECRET not in result.output


def test_secret_matches_add_up_across_workers_on_metrics(server_factory):
    server = server_factory(RATELIMIT_DEFAULT="1000 per minute")
    answers = [server.post(f"m{n}") for n in range(8)]
    assert [answer.status_code for answer in answers] == [202] * 8
    text = requests.get(server.url + "/metrics", timeout=10).text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('gateway_secret_matches_total{key_id="#0"')
    )
    assert float(line.rsplit(" ", 1)[1]) == 8
