"""Run the real gateway under gunicorn for tests: the one server runner.

:class:`GatewayServer` starts ``gunicorn app:app -c gunicorn.conf.py``
from the repository root as a subprocess on a free 127.0.0.1 port, with
the environment a test gives it, waits until ``/healthz`` answers, and
then posts signed deliveries, sends raw requests, reads its log, finds
its worker processes and stops it. It is ready once all its workers
have been forked and ``/healthz`` answers 200. Typical use::

    with GatewayServer(tmp_path, workers=2, env={"GATEWAY_HANDLERS": "..."}) as server:
        response = server.post_event("evt_1")
        assert response.status_code == 202
        wait_until(lambda: ..., timeout=20, what="the handler ran")
    print(server.log())

The server's environment is the test process's minus every gateway
variable (``GATEWAY_*`` but ``GATEWAY_TEST_*``, ``INTEGRATION_*``,
``RATELIMIT_*``, ``PROMETHEUS_*``, ``WEB_CONCURRENCY``), plus defaults
(a data directory ``folder/var`` holding the SQLite database, the test
secret, JSON logs, no access log) and then ``env``. gunicorn gets ``-w workers``, the
bind address and ``--no-control-socket``, then ``args`` (``--timeout``).
Stopping sends SIGTERM and, if the server has not exited after
``stop_timeout`` seconds, SIGKILL to its whole process group; the server
is always stopped when the ``with`` block ends.

``HANDLERS_MODULE`` (``tests.handlers_for_tests``) is a handler module
that records every call in ``GATEWAY_TEST_CALLS_DIR``; :func:`read_calls`
reads the calls back, so a test can count them across processes.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.helpers import SECRET, event_body, signed_headers

ROOT = Path(__file__).resolve().parent.parent
HANDLERS_MODULE = "tests.handlers_for_tests"
CALLS_FILE = "calls.log"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
_GATEWAY_PREFIXES = ("GATEWAY_", "INTEGRATION_", "RATELIMIT_", "PROMETHEUS_")
_GATEWAY_NAMES = ("WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")


@dataclass(frozen=True)
class Call:
    """One handler call recorded by ``tests.handlers_for_tests``."""

    handler: str
    event_id: str
    pid: int
    attempt: int


def read_calls(folder: str | Path) -> list[Call]:
    """Return every call ``tests.handlers_for_tests`` recorded in ``folder``."""
    try:
        text = (Path(folder) / CALLS_FILE).read_text()
    except FileNotFoundError:
        return []
    calls = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            calls.append(Call(parts[0], parts[1], int(parts[2]), int(parts[3])))
    return calls


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> Any:
    """Poll ``predicate`` until it returns a true value; return that value.

    :raises TimeoutError: after ``timeout`` seconds, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def becomes_true(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05
) -> bool:
    """Poll ``predicate`` for up to ``timeout`` seconds; whether it came true."""
    try:
        wait_until(predicate, timeout=timeout, what="", interval=interval)
    except TimeoutError:
        return False
    return True


def signed_delivery(
    event_id: str,
    event_type: str = "message.delivered",
    *,
    secret: str = SECRET,
    data: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Return (body, headers) of an ``hmac-sha256`` delivery of one event.

    The body's ``data`` defaults to ``{"id": event_id}``.
    """
    body = event_body(event_id, event_type, data or {"id": event_id})
    return body, signed_headers(body, secret)


class GatewayServer:
    """One gunicorn master serving the gateway on a free 127.0.0.1 port.

    :param folder: where the data directory (``folder/var``, holding the
        SQLite database ``gateway.db``) and the log file
        (``folder/gunicorn.log``) go.
    :param workers: gunicorn ``-w``.
    :param env: configuration variables for the server, by name; they
        win over the defaults.
    :param args: further gunicorn command-line arguments.
    :param stop_timeout: seconds :meth:`stop` waits after SIGTERM.
    """

    def __init__(
        self,
        folder: Path,
        *,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ):
        self.folder = Path(folder)
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.folder / "gunicorn.log"
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.environment = self._environment(env or {})
        self.database_url = self.environment["GATEWAY_DATABASE_URL"]
        self.command = [
            *_gunicorn(),
            "app:app",
            "-c",
            "gunicorn.conf.py",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{self.port}",
            "--no-control-socket",
            *args,
        ]

    # -- lifecycle -----------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> GatewayServer:
        """Start gunicorn; wait for every worker and a 200 from ``/healthz``.

        :raises RuntimeError: gunicorn exited or did not get ready in
            ``timeout`` seconds; the message ends with its log.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(self._is_healthy, timeout=timeout, what="/healthz")
        except (TimeoutError, RuntimeError) as err:
            self.stop()
            raise RuntimeError(f"gunicorn did not start: {err}\n{self.log()}") from err
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """Send SIGTERM, wait, then SIGKILL what is left; return the exit code.

        Returns None when the server was not started.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                # The server leads its own session, so its group holds
                # the master and every worker.
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)
        return process.returncode

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- looking at it -------------------------------------------------

    def log(self) -> str:
        """Return everything gunicorn and the gateway have logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's live worker processes."""
        if self.process is None:
            return []
        return _children(self.process.pid)

    # -- talking to it -------------------------------------------------

    def post(
        self, source: str, body: bytes, headers: Mapping[str, str], timeout: float = 10
    ) -> requests.Response:
        """POST a delivery to ``/api/webhooks/<source>`` on a new connection."""
        return requests.post(
            f"{self.url}/api/webhooks/{source}",
            data=body,
            headers=dict(headers),
            timeout=timeout,
        )

    def post_event(
        self,
        event_id: str,
        event_type: str = "message.delivered",
        *,
        source: str = "integration",
        secret: str = SECRET,
        data: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """POST a signed ``hmac-sha256`` delivery of one event."""
        body, headers = signed_delivery(event_id, event_type, secret=secret, data=data)
        return self.post(source, body, headers)

    def get(
        self, path: str, timeout: float = 10, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """GET a path such as ``/readyz``."""
        return requests.get(
            f"{self.url}{path}", headers=dict(headers or {}), timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, bytes]:
        """Send one raw request on a new connection; return (status, body).

        Unlike :meth:`post`, errors are the standard library's
        (``OSError``, ``http.client.HTTPException``).
        """
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    # -- private -------------------------------------------------------

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        environment = {
            name: value
            for name, value in os.environ.items()
            if not (name.startswith(_GATEWAY_PREFIXES) or name in _GATEWAY_NAMES)
            or name.startswith("GATEWAY_TEST_")
        }
        data_dir = self.folder / "var"
        environment.update(
            {
                "GATEWAY_DATA_DIR": str(data_dir),
                "GATEWAY_DATABASE_URL": f"sqlite:///{data_dir / 'gateway.db'}",
                "INTEGRATION_SECRET_KEY": SECRET,
                "GATEWAY_LOG_FORMAT": "json",
                "GATEWAY_ACCESS_LOG": "",
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
            }
        )
        environment.update({name: str(value) for name, value in env.items()})
        return environment

    def _is_healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("gunicorn exited")
        if len(self.worker_pids()) < self.workers:
            return False
        try:
            return self.get("/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False


def _gunicorn() -> list[str]:
    script = Path(sys.executable).parent / "gunicorn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gunicorn"]


def _children(parent: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; fields resume after its ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return sorted(found)
