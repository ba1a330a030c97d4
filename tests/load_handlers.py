"""Handlers for the load test: each records every call in a file.

Loaded by the gateway under test with
``GATEWAY_HANDLERS=tests.load_handlers``; the file is named by
``GATEWAY_TEST_LOAD_RECORD``. Each call appends one line,
``<handler> <source> <event id>``, with a single ``O_APPEND`` write, so
lines from several worker processes never interleave, and a line exists
only once the handler has run.
"""

from __future__ import annotations

import os

from gateway import Event, on

RECORD_VARIABLE = "GATEWAY_TEST_LOAD_RECORD"


def _record(handler: str, source: str, event: Event) -> None:
    line = f"{handler} {source} {event.id}\n".encode()
    descriptor = os.open(
        os.environ[RECORD_VARIABLE], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
    )
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


@on("*")
def archive(source: str, event: Event) -> None:
    """Record that the archive handler saw the event."""
    _record("archive", source, event)


@on("*")
def notify(source: str, event: Event) -> None:
    """Record that the notify handler saw the event."""
    _record("notify", source, event)
