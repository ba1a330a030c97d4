"""A real gunicorn serving the gateway on 127.0.0.1, for tests.

Started as a subprocess from the repository root on a free loopback port
with its configuration in environment variables and a data directory of
its own; ready once ``/healthz`` answers; always stopped by the caller
(use it as a context manager).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: object, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return bool(condition())  # type: ignore[operator]


class GunicornServer:
    """``gunicorn app:app`` with the repository's gunicorn.conf.py.

    ``env`` holds the gateway's variables (added to a minimal environment);
    ``args`` are extra gunicorn arguments such as ``--workers 2``. The
    server's output goes to ``log_path``.
    """

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = data_dir / "gunicorn.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "GATEWAY_DATA_DIR": str(data_dir / "var"),
            "GATEWAY_DATABASE_URL": f"sqlite:///{data_dir / 'events.db'}",
            "GATEWAY_ACCESS_LOG": "",
            "GATEWAY_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GunicornServer:
        """Start gunicorn and wait until ``/healthz`` answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "app:app",
            "--config",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--no-control-socket",
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_until(self.is_ready, READY_TIMEOUT_SECONDS, 0.1):
            self.stop()
            raise RuntimeError(f"gunicorn did not become ready:\n{self.log()}")
        return self

    def is_ready(self) -> bool:
        """Whether the server answers ``/healthz`` with 200 now."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
        try:
            status, _ = self.request("GET", "/healthz", timeout=2)
        except OSError:
            return False
        return status == 200

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, bytes]:
        """Send one request on a new connection; return (status, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def worker_pids(self) -> list[int]:
        """The process ids of the current worker processes."""
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def log(self) -> str:
        """The server's output so far (the last 4000 characters)."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop gunicorn: TERM, then KILL after a grace period."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
