"""Handlers that record every call durably, for tests with real servers.

Load with ``GATEWAY_HANDLERS=tests.handlers_for_tests`` and set
``GATEWAY_TEST_CALLS_DIR`` to a folder: each call appends one line
``<handler> <event id> <pid> <attempt>`` to ``calls.log`` there, in one
``O_APPEND`` write, so lines from several worker processes never mix and
a line written before a crash survives it. ``GATEWAY_TEST_HANDLER_DELAY_MS``
makes each handler sleep first (so a kill or shutdown can land mid-
dispatch). ``tests.servers.read_calls`` reads the lines back; import
this module only in the server, since importing it connects handlers.

Two handlers: ``first`` listens to every event, ``second`` to
``message.*`` only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gateway import Event, on
from tests.servers import CALLS_FILE


@on("*")
def first(source: str, event: Event) -> None:
    """Record the call after the configured delay."""
    _record("first", event)


@on("message.*")
def second(source: str, event: Event) -> None:
    """Record the call after the configured delay."""
    _record("second", event)


def _record(handler: str, event: Event) -> None:
    delay_ms = float(os.environ.get("GATEWAY_TEST_HANDLER_DELAY_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    folder = os.environ.get("GATEWAY_TEST_CALLS_DIR")
    if not folder:
        return
    line = f"{handler} {event.id} {os.getpid()} {event.attempt}\n".encode()
    descriptor = os.open(
        Path(folder) / CALLS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
