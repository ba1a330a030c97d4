"""Slow clients against a real gunicorn: they are cut, others are served.

gunicorn runs with the repository's settings (the gateway's gthread
worker, 4 threads) but a 3-second ``--timeout``, so the request deadline
passes quickly. More slow clients than the worker has threads are opened:
without the deadline they would hold every thread for as long as they
keep trickling, and nobody else would be served.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import GatewayServer

pytestmark = pytest.mark.server

DEADLINE_SECONDS = 3
THREADS = 4
SLOW_CLIENTS = THREADS + 2
TRICKLE_INTERVAL_SECONDS = 1.0
MAX_TRICKLES = 30  # the trickling stops by itself after this many bytes
ANSWER_TIMEOUT_SECONDS = 15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp_path: Path = tmp_path_factory.mktemp("slow-clients")
    env = {"GATEWAY_THREADS": str(THREADS), "GATEWAY_LOG_LEVEL": "WARNING"}
    args = ["--timeout", str(DEADLINE_SECONDS)]
    with GatewayServer(tmp_path, workers=1, env=env, args=args) as running:
        yield running


class Trickler:
    """Sends one byte a second on each socket until stopped or refused."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trickler:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()

    def _run(self) -> None:
        live = list(self.sockets)
        for _ in range(MAX_TRICKLES):
            if self.stopped.wait(TRICKLE_INTERVAL_SECONDS) or not live:
                return
            for sock in list(live):
                try:
                    sock.sendall(b" ")
                except OSError:
                    live.remove(sock)


def open_slow(server: GatewayServer, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(head)
    sock.settimeout(ANSWER_TIMEOUT_SECONDS)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by a timeout)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


SLOW_BODY_HEAD = (
    b"POST /api/webhooks/integration HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
)
SLOW_HEADERS_HEAD = b"POST /api/webhooks/integration HTTP/1.1\r\nHost: 127.0.0.1\r\nX-"


def test_slow_bodies_are_cut_and_answered_while_others_are_served(server):
    sockets = [open_slow(server, SLOW_BODY_HEAD) for _ in range(SLOW_CLIENTS)]
    with Trickler(sockets):
        # Every thread is taken by a slow client; this request is served
        # once the deadline frees them, well within its own timeout.
        status, _ = server.request("GET", "/healthz", timeout=ANSWER_TIMEOUT_SECONDS)
        assert status == 200
        answers = [read_answer(sock) for sock in sockets]
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        assert json.loads(body)["code"] == "invalid_payload"


def test_slow_headers_are_cut_while_others_are_served(server):
    sockets = [open_slow(server, SLOW_HEADERS_HEAD) for _ in range(SLOW_CLIENTS)]
    with Trickler(sockets):
        status, _ = server.request("GET", "/healthz", timeout=ANSWER_TIMEOUT_SECONDS)
        assert status == 200
        answers = [read_answer(sock) for sock in sockets]
    # Half-read headers leave nothing to answer: the connection is closed.
    assert answers == [b""] * SLOW_CLIENTS


def test_one_slow_client_does_not_delay_others(server):
    with Trickler([open_slow(server, SLOW_BODY_HEAD)]):
        for _ in range(5):
            status, _ = server.request("GET", "/healthz", timeout=2)
            assert status == 200
