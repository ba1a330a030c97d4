"""The request deadline of the gateway's gunicorn worker, and its settings."""

from __future__ import annotations

import runpy
import socket
from pathlib import Path

from gateway.serving import RequestDeadlines
from tests.conftest import FrozenClock

ROOT = Path(__file__).resolve().parent.parent


def test_overdue_request_has_its_read_side_shut() -> None:
    clock = FrozenClock(100.0)
    deadlines = RequestDeadlines(clock=clock, interval_seconds=3600)
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        with deadlines.watch(server_side, 5):
            clock.advance(5)
            assert deadlines.expire() == 1
            # A blocked read now ends at once instead of waiting for data.
            assert server_side.recv(10) == b""


def test_request_within_its_deadline_is_left_alone() -> None:
    clock = FrozenClock(100.0)
    deadlines = RequestDeadlines(clock=clock, interval_seconds=3600)
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        with deadlines.watch(server_side, 5):
            clock.advance(4.9)
            assert deadlines.expire() == 0
            client_side.sendall(b"x")
            assert server_side.recv(10) == b"x"


def test_finished_request_is_no_longer_watched() -> None:
    clock = FrozenClock(100.0)
    deadlines = RequestDeadlines(clock=clock, interval_seconds=3600)
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        with deadlines.watch(server_side, 5):
            pass
        clock.advance(60)
        assert deadlines.expire() == 0


def test_gunicorn_settings_use_the_deadline_worker_with_threads() -> None:
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["worker_class"] == "gateway.serving.DeadlineThreadWorker"
    assert settings["threads"] == 4
    assert settings["timeout"] == 30
    assert settings["limit_request_fields"] <= 200
    assert settings["limit_request_field_size"] <= 16384
