"""The live tail: deliveries, handler outcomes and refusals as they happen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gateway.cli_refusals import tail as tail_command
from gateway.tail import Tail, follow
from tests import helpers
from tests.conftest import SECRET


def deliver(client: Any, event_id: str, secret: str = SECRET) -> int:
    return int(helpers.deliver(client, event_id, secret=secret).status_code)


def test_tail_shows_only_what_comes_after_it_starts(
    make_app, connect, isolated_handlers
):
    app = make_app()
    gateway = app.extensions["gateway"]
    client = app.test_client()
    connect("ping", lambda source, event: None)
    deliver(client, "before")
    gateway.dispatcher.run_until_idle()
    follower = Tail(gateway.store)
    follower.start()
    assert follower.poll() == []
    deliver(client, "after")
    deliver(client, "forged", secret="wrong")
    gateway.refusals.flush()
    gateway.dispatcher.run_until_idle()
    lines = follower.poll()
    assert len(lines) == 3
    assert any("delivery integration after ping key=#0" in line for line in lines)
    assert any(" handler " in line and " after ok attempt=1" in line for line in lines)
    assert any(
        "refused integration 401 invalid_signature" in line
        and "no configured secret matched" in line
        for line in lines
    )
    assert all("before" not in line for line in lines)
    assert follower.poll() == []


def test_tail_shows_failed_handler_runs_with_their_error(
    make_app, connect, isolated_handlers
):
    app = make_app()
    gateway = app.extensions["gateway"]
    follower = Tail(gateway.store)
    follower.start()

    def broken(source: str, event: Any) -> None:
        raise ValueError("bad input")

    connect("ping", broken)
    deliver(app.test_client(), "e1")
    gateway.dispatcher.run_until_idle()
    [handler_line] = [line for line in follower.poll() if " handler " in line]
    assert "retrying attempt=1" in handler_line
    assert "error=ValueError: bad input" in handler_line


def test_follow_emits_heartbeats_and_stops_after_max_seconds(store):
    follower = Tail(store)
    follower.start()
    now = [0.0]
    lines: list[str] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    follow(
        follower,
        lines.append,
        sleep=sleep,
        clock=lambda: now[0],
        interval_seconds=1,
        heartbeat_seconds=5,
        max_seconds=12,
    )
    beats = [line for line in lines if "-- watching" in line]
    assert len(beats) == 3  # at 0, 5 and 10 seconds
    assert "0 deliveries" in beats[0] and "0 pending" in beats[0]


def test_tail_command_runs_until_max_seconds(make_app, tmp_path: Path):
    make_app()
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path / "var"),
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "INTEGRATION_SECRET_KEY": SECRET,
    }
    result = CliRunner().invoke(
        tail_command,
        ["--max-seconds", "0.2", "--interval", "0.05", "--heartbeat", "0.1"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "-- watching" in result.output


def test_tail_command_stops_cleanly_on_ctrl_c(make_app, tmp_path: Path, monkeypatch):
    make_app()

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("gateway.cli_refusals._sleep", interrupt)
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}"}
    result = CliRunner().invoke(tail_command, [], env=env)
    assert result.exit_code == 0, result.output
    assert "stopped" in result.output
