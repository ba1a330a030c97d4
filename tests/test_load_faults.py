"""A burst of signed deliveries while the gateway's dependencies fail.

A real gunicorn with 2 workers and the PostgreSQL store takes a bounded
burst of deliveries (``GATEWAY_TEST_LOAD_DELIVERIES``, default 2000) from
a small thread pool on loopback, while the test (1) kills a worker with
SIGKILL, (2) terminates the gateway's PostgreSQL sessions, found by their
``application_name``, and (3) cuts the gateway off from Redis by stopping
a TCP proxy that stands between the two (the machine's Redis itself is
left alone).

What must hold afterwards:

* no answer is a 500, and every refusal is a 429 or 503 that the
  provider will retry;
* a request dropped by the killed worker got no answer, so the provider
  retries it too;
* every delivery that got a 2xx is stored and dispatched to both
  handlers (``tests/load_handlers.py`` records each call in a file);
* after the provider's retries, every delivery is stored and dispatched:
  none is lost.

The counts are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.schemes import get_scheme
from tests.conftest import POSTGRES_URL, SECRET
from tests.servers import GatewayServer, becomes_true, free_port

pytestmark = [pytest.mark.server, pytest.mark.postgres, pytest.mark.redis]

DELIVERIES = int(os.environ.get("GATEWAY_TEST_LOAD_DELIVERIES", "2000"))
SENDER_THREADS = 8
REQUEST_TIMEOUT_SECONDS = 30
DISPATCH_TIMEOUT_SECONDS = 90
PROVIDER_RETRIES = 5
REDIS_ADDRESS = ("127.0.0.1", 6379)
RETRYABLE = {429: "rate_limited", 503: "unavailable"}
HANDLERS = ("archive", "notify")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; can be cut and restored.

    Stopping closes the listening socket and every forwarded connection,
    so the gateway sees its Redis connections drop and new ones refused.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(REDIS_ADDRESS)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def terminate_sessions(application_name: str) -> int:
    """End the gateway's own PostgreSQL sessions; return how many."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def stored_ids(database_url: str, source: str) -> set[str]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT event_id FROM events WHERE source = %s", (source,)
        ).fetchall()
    return {row[0] for row in rows}


def dispatched_ids(record: Path, source: str) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {name: set() for name in HANDLERS}
    try:
        text = record.read_text()
    except FileNotFoundError:
        return seen
    for line in text.splitlines():
        handler, line_source, event_id = line.split(" ", 2)
        if line_source == source:
            seen[handler].add(event_id)
    return seen


class Sender:
    """Posts signed deliveries like a provider and keeps every outcome."""

    def __init__(self, server: GatewayServer, source: str) -> None:
        self.server = server
        self.source = source
        self.scheme = get_scheme("hmac-sha256")
        self.completed = 0
        self.progress = threading.Condition()

    def send(self, event_id: str) -> tuple[str, int | None, str]:
        body = json.dumps(
            {"id": event_id, "type": "message.delivered", "data": {"n": event_id}}
        ).encode()
        headers = {"Content-Type": "application/json"}
        headers.update(self.scheme.sign(body, SECRET, now=0))
        try:
            status, answer = self.server.request(
                "POST",
                f"/api/webhooks/{self.source}",
                body=body,
                headers=headers,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
            code = "accepted" if status < 300 else json.loads(answer)["code"]
            outcome: tuple[str, int | None, str] = (event_id, status, code)
        except (OSError, http.client.HTTPException) as err:
            outcome = (event_id, None, f"dropped:{type(err).__name__}")
        with self.progress:
            self.completed += 1
            self.progress.notify_all()
        return outcome

    def wait_for(self, count: int) -> None:
        with self.progress:
            self.progress.wait_for(
                lambda: self.completed >= count, REQUEST_TIMEOUT_SECONDS * 2
            )


def inject_faults(
    sender: Sender,
    server: GatewayServer,
    proxy: TcpProxy,
    application_name: str,
    log: list[str],
) -> None:
    """Run the three faults at fixed points of the burst."""
    sender.wait_for(DELIVERIES * 15 // 100)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    log.append(f"killed worker {victim}")

    sender.wait_for(DELIVERIES * 35 // 100)
    log.append(f"terminated {terminate_sessions(application_name)} sessions")

    sender.wait_for(DELIVERIES * 55 // 100)
    proxy.stop()
    # Readiness reports the limiter's storage as degraded (still ready:
    # deliveries keep flowing), so it shows the cut is real.
    is_cut = becomes_true(
        lambda: _limiter_state(server) == "degraded", timeout=10, interval=0.1
    )
    log.append(f"redis cut (limiter degraded: {is_cut})")
    sender.wait_for(DELIVERIES * 70 // 100)
    log.append(f"terminated {terminate_sessions(application_name)} sessions")
    sender.wait_for(DELIVERIES * 85 // 100)
    proxy.start()
    is_back = becomes_true(
        lambda: _limiter_state(server) == "ok", timeout=10, interval=0.1
    )
    log.append(f"redis restored (limiter ok: {is_back})")


def test_burst_with_faults_loses_nothing(
    tmp_path: Path, postgres_url: str, redis_proxy: TcpProxy
) -> None:
    application_name = f"gw_load_{uuid.uuid4().hex[:12]}"
    database_url = f"{postgres_url}&application_name={application_name}"
    # A source name of its own keeps this burst's Redis counters apart from
    # any other gateway sharing the machine's Redis.
    source = f"load{uuid.uuid4().hex[:10]}"
    config = tmp_path / "sources.toml"
    config.write_text(
        f'[sources.{source}]\nscheme = "hmac-sha256"\nsecrets = ["{SECRET}"]\n'
        'rate_limit = "1000000 per minute"\n'
    )
    record = tmp_path / "handler-calls.log"
    env = {
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_DATABASE_URL": database_url,
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{redis_proxy.port}",
        "GATEWAY_HANDLERS": "tests.load_handlers",
        "GATEWAY_TEST_LOAD_RECORD": str(record),
        "GATEWAY_POLL_SECONDS": "0.2",
        "GATEWAY_RETRY_BASE_SECONDS": "0.2",
        "GATEWAY_LEASE_SECONDS": "5",
        "GATEWAY_LOG_LEVEL": "ERROR",
    }
    ids = [f"evt_load_{number:05d}" for number in range(DELIVERIES)]
    faults: list[str] = []
    with GatewayServer(tmp_path, workers=2, env=env) as server:
        assert becomes_true(lambda: len(server.worker_pids()) == 2, timeout=30)
        sender = Sender(server, source)
        injector = threading.Thread(
            target=inject_faults,
            args=(sender, server, redis_proxy, application_name, faults),
            daemon=True,
        )
        injector.start()
        with ThreadPoolExecutor(SENDER_THREADS) as pool:
            first = list(pool.map(sender.send, ids))
        injector.join(REQUEST_TIMEOUT_SECONDS)
        assert faults[-1] == "redis restored (limiter ok: True)", faults
        assert "redis cut (limiter degraded: True)" in faults
        assert "terminated 0 sessions" not in faults

        # The provider retries whatever got no 2xx, as it would.
        pending = [event_id for event_id, status, _ in first if not _is_2xx(status)]
        retried: list[tuple[str, int | None, str]] = []
        for _ in range(PROVIDER_RETRIES):
            if not pending:
                break
            outcomes = [sender.send(event_id) for event_id in pending]
            retried.extend(outcomes)
            pending = [
                event_id for event_id, status, _ in outcomes if not _is_2xx(status)
            ]

        accepted_first = {event_id for event_id, status, _ in first if _is_2xx(status)}
        assert becomes_true(
            lambda: _all_dispatched(record, source, set(ids)),
            timeout=DISPATCH_TIMEOUT_SECONDS,
            interval=0.5,
        ), "not every delivery reached both handlers"
        stored = stored_ids(f"{postgres_url}&application_name=gw_load_check", source)
        dispatched = dispatched_ids(record, source)
        restarted = becomes_true(lambda: len(server.worker_pids()) == 2, timeout=30)

    counts = collections.Counter(code for _, _, code in first)
    lost_first = accepted_first - stored
    lost_first |= {
        i for i in accepted_first for h in HANDLERS if i not in dispatched[h]
    }
    lost = (set(ids) - stored) | lost_first
    print(
        f"\nload: sent={DELIVERIES} accepted={len(accepted_first)}"
        f" refused={dict(sorted((k, v) for k, v in counts.items() if k != 'accepted'))}"
        f" retried={len(retried)} still_pending={len(pending)} lost={len(lost)}"
        f" faults={faults}"
    )
    assert restarted
    statuses = [status for _, status, _ in first + retried]
    assert 500 not in statuses
    for _, status, code in first + retried:
        if status is not None and not _is_2xx(status):
            assert RETRYABLE.get(status) == code
    dropped = sum(1 for _, status, _ in first if status is None)
    assert dropped <= SENDER_THREADS  # only requests in flight at the kill
    assert pending == []
    assert lost == set()


def _limiter_state(server: GatewayServer) -> str:
    try:
        _, body = server.request("GET", "/readyz", timeout=5)
        return str(json.loads(body)["checks"]["limiter"])
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        return "unknown"


def _is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _all_dispatched(record: Path, source: str, ids: set[str]) -> bool:
    seen = dispatched_ids(record, source)
    return all(ids <= seen[handler] for handler in HANDLERS)
