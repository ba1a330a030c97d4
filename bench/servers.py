"""Start and stop gunicorn on loopback, and read its workers' memory.

Every server is started from the repository root with the repository's
own ``gunicorn.conf.py``, so the floor and the gateway run under the
same worker class, worker count, thread count and logging.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = ROOT / "gunicorn.conf.py"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
# Variables the gateway reads; the parent's values never leak into a run.
_GATEWAY_PREFIXES = ("GATEWAY_", "INTEGRATION_", "RATELIMIT_", "BENCH_")


@dataclass
class Server:
    """One running gunicorn: its master process, port and log file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    ready_path: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The server's root URL on 127.0.0.1."""
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's worker processes."""
        return _children(self.process.pid)

    def worker_rss_mb(self) -> list[float]:
        """Return each worker's resident memory (VmRSS) in MiB."""
        sizes = []
        for pid in self.worker_pids():
            rss_kb = _vm_rss_kb(pid)
            if rss_kb is not None:
                sizes.append(round(rss_kb / 1024, 1))
        return sizes

    def stop(self) -> None:
        """Stop gunicorn gracefully (SIGTERM), killing it after a timeout."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start(
    name: str,
    app: str,
    environment: Mapping[str, str],
    log_dir: Path,
    *,
    ready_path: str = "/healthz",
    workers_expected: int | None = None,
) -> Server:
    """Start ``gunicorn <app> -c gunicorn.conf.py`` on a free loopback port.

    Waits until ``ready_path`` answers 200 and every worker has booted.
    :raises RuntimeError: gunicorn exited or was not ready in time; the
        message holds the end of its log.
    """
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_GATEWAY_PREFIXES)
    }
    env.update(environment)
    env["GATEWAY_BIND"] = f"127.0.0.1:{port}"
    env["PYTHONUNBUFFERED"] = "1"
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                app,
                "--config",
                str(GUNICORN_CONFIG),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, process, port, log_path, ready_path)
    try:
        _wait_ready(server, workers_expected or configured_workers())
    except BaseException:
        server.stop()
        raise
    return server


def configured_workers() -> int:
    """The worker count ``gunicorn.conf.py`` will use in this environment."""
    return int(os.environ.get("WEB_CONCURRENCY", "2"))


def configured_threads() -> int:
    """The thread count per worker ``gunicorn.conf.py`` will use."""
    return int(os.environ.get("GATEWAY_THREADS", "4"))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of a log file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(server: Server, workers: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    url = server.base_url + server.ready_path
    with requests.Session() as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"{server.name}: gunicorn exited with {server.process.returncode}"
                    f"\n{log_tail(server.log_path)}"
                )
            try:
                answer = session.get(url, timeout=2)
            except requests.RequestException:
                answer = None
            if (
                answer is not None
                and answer.status_code == 200
                and len(server.worker_pids()) >= workers
            ):
                return
            time.sleep(0.1)
    raise RuntimeError(
        f"{server.name}: not ready within {READY_TIMEOUT_SECONDS:.0f} s"
        f"\n{log_tail(server.log_path)}"
    )


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(item) for item in path.read_text().split()]
    except OSError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent pid is the second field after the parenthesised name.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
