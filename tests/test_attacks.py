"""Faults found by attacking a running gateway, each kept as a test of its kind."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.messages import parse_timestamp
from gateway.store import open_store
from tests.helpers import event_body, post, signed_headers


def test_handler_calling_sys_exit_fails_alone_and_others_run(
    make_app, connect, isolated_handlers
):
    app = make_app()
    gateway = app.extensions["gateway"]
    calls: list[str] = []

    def quits(source: str, event: Any) -> None:
        sys.exit(3)

    def records(source: str, event: Any) -> None:
        calls.append(event.id)

    connect("boom.exit", quits)
    connect("boom.*", records)
    body = event_body("bx1", "boom.exit")
    assert (
        post(app.test_client(), "integration", body, signed_headers(body)).status_code
        == 202
    )
    gateway.dispatcher.run_until_idle()
    assert calls == ["bx1"]
    runs = gateway.store.handler_runs(gateway.store.list_events()[0].pk)
    failed = next(run for name, run in runs.items() if name.endswith("quits"))
    assert failed.status == "retrying"
    assert "SystemExit" in (failed.last_error or "")


def test_dispatcher_thread_survives_a_handler_calling_sys_exit(
    make_app, connect, isolated_handlers
):
    app = make_app()
    gateway = app.extensions["gateway"]
    connect("boom.exit", lambda source, event: sys.exit(3))
    body = event_body("bx2", "boom.exit")
    post(app.test_client(), "integration", body, signed_headers(body))
    gateway.dispatcher.start()
    try:
        gateway.dispatcher.wake()
        deadline = threading.Event()
        for _ in range(200):
            if gateway.store.handler_runs(gateway.store.list_events()[0].pk):
                break
            deadline.wait(0.05)
        assert gateway.dispatcher.is_running()
    finally:
        gateway.dispatcher.stop(timeout_seconds=5)


def test_body_of_exactly_the_limit_is_accepted_and_one_more_byte_refused(make_app):
    app = make_app(
        '[sources.integration]\nscheme = "hmac-sha256"\n'
        'secrets = ["testsecret"]\nmax_body_bytes = 100\n'
    )
    client = app.test_client()
    prefix = b'{"id":"exact","type":"t","pad":"'
    exact = prefix + b"x" * (100 - len(prefix) - 2) + b'"}'
    over = exact[:-2] + b'x"}'
    assert len(exact) == 100
    assert post(client, "integration", exact, signed_headers(exact)).status_code == 202
    assert post(client, "integration", over, signed_headers(over)).status_code == 413


def test_doubled_slashes_are_a_json_404_not_a_redirect(client):
    response = client.post("//api//webhooks//integration", data=b"{}")
    assert response.status_code == 404
    assert response.json["code"] == "not_found"


def test_removed_sqlite_file_refuses_deliveries_instead_of_losing_them(
    make_app, tmp_path
):
    app = make_app()
    client = app.test_client()
    first = event_body("before_removal")
    assert post(client, "integration", first, signed_headers(first)).status_code == 202
    for name in os.listdir(tmp_path):
        if name.startswith("events.db"):
            os.remove(tmp_path / name)
    body = event_body("after_removal")
    response = post(client, "integration", body, signed_headers(body))
    assert response.status_code == 503
    assert response.json["code"] == "unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["store"] != "ok"


def test_current_postgres_schema_is_not_locked_again_at_start(postgres_url):
    import psycopg

    store = open_store(postgres_url)
    store.migrate()
    # A live insert holds a lock that CREATE INDEX would wait for.
    holder = psycopg.connect(postgres_url)
    try:
        holder.execute(
            "INSERT INTO events (source, event_id, type, received_at, payload,"
            " headers, status, next_attempt_at) VALUES"
            " ('s', 'held', 't', 0, '{}', '{}', 'pending', 0)"
        )
        finished = threading.Event()

        def migrate_again() -> None:
            store.migrate()
            finished.set()

        worker = threading.Thread(target=migrate_again, daemon=True)
        worker.start()
        assert finished.wait(timeout=20), "migrate waited on a live transaction"
    finally:
        holder.rollback()
        holder.close()
        store.close()


@pytest.mark.parametrize("value", [10**400, "1e999", float("inf"), "nan"])
def test_absurd_message_timestamps_are_no_timestamp(value):
    assert parse_timestamp(value) is None


@pytest.mark.parametrize("since", ["99999999999999999999h", "9999999999h"])
def test_cli_refuses_an_absurd_time_as_a_usage_error(tmp_path: Path, since):
    result = CliRunner().invoke(
        cli,
        ["replay", "--since", since],
        env={
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
            "INTEGRATION_SECRET_KEY": "testsecret",
        },
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
