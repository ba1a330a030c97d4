"""Run the real gateway under gunicorn for tests.

A small, reusable helper: start ``gunicorn app:app -c gunicorn.conf.py``
from the repository root as a subprocess on a free 127.0.0.1 port, with
the environment a test gives it, then post signed deliveries, read its
log, find its worker processes and stop it. Typical use::

    with GatewayServer(tmp_path, workers=2, env={"GATEWAY_HANDLERS": "..."}) as server:
        response = server.post_event("evt_1")
        assert response.status_code == 202
        wait_until(lambda: ..., timeout=20, what="the handler ran")
    print(server.log())

``HANDLERS_MODULE`` (``tests.handlers_for_tests``) is a handler module
that records every call in ``GATEWAY_TEST_CALLS_DIR``; :func:`read_calls`
reads the calls back, so a test can count them across processes.

The server's own environment is the test process's minus every gateway
variable (``GATEWAY_*``, ``INTEGRATION_*``, ``RATELIMIT_*``), plus
defaults (a data directory under the given folder, the test secret,
JSON logs) and then ``env``. Stopping sends SIGTERM and, if the server
has not exited after ``stop_timeout`` seconds, SIGKILL to it and its
workers; the server is always stopped when the ``with`` block ends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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

ROOT = Path(__file__).resolve().parent.parent
SECRET = "testsecret"
HANDLERS_MODULE = "tests.handlers_for_tests"
CALLS_FILE = "calls.log"
_GATEWAY_PREFIXES = ("GATEWAY_", "INTEGRATION_", "RATELIMIT_")


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


def signed_delivery(
    event_id: str,
    event_type: str = "message.delivered",
    *,
    secret: str = SECRET,
    data: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Return (body, headers) of an ``hmac-sha256`` delivery of one event."""
    body = json.dumps(
        {"id": event_id, "type": event_type, "data": dict(data or {"id": event_id})}
    ).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Integration-Signature": signature,
    }
    return body, headers


class GatewayServer:
    """One gunicorn master serving the gateway on a free 127.0.0.1 port.

    :param folder: where the data directory (``folder/var``) and the log
        file (``folder/gunicorn.log``) go.
    :param workers: gunicorn ``-w``.
    :param env: configuration variables for the server, by name.
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
        stop_timeout: float = 30.0,
    ):
        self.folder = Path(folder)
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.folder / "gunicorn.log"
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.environment = self._environment(env or {})
        self.command = [
            *_gunicorn(),
            "app:app",
            "-c",
            "gunicorn.conf.py",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{self.port}",
            *args,
        ]

    # -- lifecycle -----------------------------------------------------

    def start(self, timeout: float = 30.0) -> GatewayServer:
        """Start gunicorn and wait until ``/healthz`` answers 200.

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
            workers = self.worker_pids()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                for pid in [process.pid, *workers]:
                    _kill(pid)
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
    ) -> requests.Response:
        """POST a signed ``hmac-sha256`` delivery of one event."""
        body, headers = signed_delivery(event_id, event_type, secret=secret)
        return self.post(source, body, headers)

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        """GET a path such as ``/readyz``."""
        return requests.get(f"{self.url}{path}", timeout=timeout)

    # -- private -------------------------------------------------------

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        environment = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_GATEWAY_PREFIXES)
            or name.startswith("GATEWAY_TEST_")
        }
        environment.update(
            {
                "GATEWAY_DATA_DIR": str(self.folder / "var"),
                "INTEGRATION_SECRET_KEY": SECRET,
                "GATEWAY_LOG_FORMAT": "json",
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
            }
        )
        environment.update({name: str(value) for name, value in env.items()})
        return environment

    def _is_healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("gunicorn exited")
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


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
