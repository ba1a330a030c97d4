"""A handler that does nothing but note how long dispatch took.

Loaded with ``GATEWAY_HANDLERS=bench.noop_handler``. For every event it
receives whose payload carries ``sent_at`` (unix seconds, set by the
fixed-rate driver just before sending), it appends one line
``<event id> <seconds from send to this call>`` to the file named by
``BENCH_DISPATCH_LOG``. Lines are written with one ``O_APPEND`` write
each, so the workers of one gunicorn can share the file. Events without
``sent_at`` (the wrk load) are counted by nobody and cost nothing more.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gateway import Event, on

_log_path = os.environ.get("BENCH_DISPATCH_LOG", "")
_descriptor: int | None = None


@on("*")
def note_dispatch(source: str, event: Event) -> None:
    """Record the send-to-handler latency of a timed event."""
    called_at = time.time()
    sent_at: Any = event.payload.get("sent_at")
    if not _log_path or not isinstance(sent_at, int | float):
        return
    line = f"{event.id} {called_at - sent_at:.6f}\n".encode()
    os.write(_open(), line)


def _open() -> int:
    global _descriptor
    if _descriptor is None:
        _descriptor = os.open(_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return _descriptor
