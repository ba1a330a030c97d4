"""The command-line tool: every command through click's runner, and once as
a real subprocess; exit codes, JSON output, and no secret in any output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from werkzeug.serving import make_server

from gateway import DoNotRetry, Event, create_app
from gateway.cli import cli, webhook_url
from gateway.cli_support import parse_moment
from gateway.store import SQLiteStore

from .conftest import ALL_SOURCES_TOML, FROZEN_AT, ROOT, SECRET, STANDARD_SECRET

API_KEY = "sk_test_cli_api_key_0123456789"
METRICS_TOKEN = "metrics-token-cli-9876"
SECRETS = (SECRET, STANDARD_SECRET, API_KEY, METRICS_TOKEN)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI run: every scheme as a source, one store."""
    sources = tmp_path / "sources.toml"
    sources.write_text(ALL_SOURCES_TOML)
    return {
        "GATEWAY_CONFIG": str(sources),
        "GATEWAY_DATA_DIR": str(tmp_path / "var"),
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "INTEGRATION_API_KEY": API_KEY,
        "GATEWAY_METRICS_TOKEN": METRICS_TOKEN,
    }


@pytest.fixture
def run(cli_env: dict[str, str]) -> Callable[..., Result]:
    """Run the CLI in-process; assert no secret appears in its output."""

    def invoke(*args: str, input: str | None = None, **env: str) -> Result:
        result = CliRunner().invoke(
            cli, list(args), env={**cli_env, **env}, input=input
        )
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert_no_secret(result.output)
        return result

    return invoke


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.fixture
def stored(make_app: Callable[..., Any], sign: Callable[..., Any], connect: Any) -> Any:
    """A store holding three dispatched deliveries: done, dead and done."""

    def record(source: str, event: Event) -> None:
        return None

    def refuse(source: str, event: Event) -> None:
        raise DoNotRetry("cannot deliver to " + event.id)

    connect("message.*", record)
    connect("message.failed", refuse)
    app = make_app(ALL_SOURCES_TOML)
    client = app.test_client()
    for name in ("message.delivered.json", "message.failed.json"):
        body = (ROOT / "examples" / name).read_bytes()
        response = client.post(
            "/api/webhooks/integration",
            data=body,
            headers={**sign("hmac-sha256", body), "Content-Type": "application/json"},
        )
        assert response.status_code == 202
    body = (ROOT / "examples" / "github.issues.opened.json").read_bytes()
    response = client.post(
        "/api/webhooks/github",
        data=body,
        headers={
            **sign("github", body),
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": "gh-delivery-1",
        },
    )
    assert response.status_code == 202
    gateway = app.extensions["gateway"]
    gateway.dispatcher.run_until_idle()
    return gateway.store


def json_of(result: Result) -> Any:
    return json.loads(result.stdout)


# -- config check -------------------------------------------------------------


def test_config_check_reports_each_source_and_secret_length_only(
    run: Callable[..., Result],
) -> None:
    result = run("config", "check", "--json")
    assert result.exit_code == 0
    report = json_of(result)
    assert report["ok"] is True
    assert {source["name"] for source in report["sources"]} == {
        "integration",
        "github",
        "stripe",
        "standard",
        "slack",
        "shopify",
    }
    standard = next(s for s in report["sources"] if s["name"] == "standard")
    assert standard["secrets"] == [
        {"key_id": "#0", "length": len(STANDARD_SECRET), "not_after": None, "note": ""}
    ]
    assert report["settings"]["api_key"] == f"set ({len(API_KEY)} characters)"


def test_config_check_table_masks_the_database_password(
    run: Callable[..., Result],
) -> None:
    url = "postgresql://gateway:db-password-42@127.0.0.1:5432/gw"
    result = run("config", "check", GATEWAY_DATABASE_URL=url)
    assert result.exit_code == 0
    assert "Configuration is valid" in result.stdout
    assert "postgresql://gateway:[redacted]@127.0.0.1:5432/gw" in result.stdout
    assert "db-password-42" not in result.output


def test_config_check_exits_3_with_the_config_error(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sources.acme]\nscheme = "md5"\nsecrets = ["testsecret"]\n')
    result = run("config", "check", "--json", GATEWAY_CONFIG=str(bad))
    assert result.exit_code == 3
    assert "[sources.acme].scheme" in result.stderr
    assert json_of(result)["ok"] is False


def test_config_error_never_shows_the_bad_secret(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    bad_secret = "whsec_!!not-base64-secret!!"
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[sources.std]\nscheme = "standard"\nsecrets = ["{bad_secret}"]\n')
    result = run("config", "check", GATEWAY_CONFIG=str(bad))
    assert result.exit_code == 3
    assert "[sources.std].secrets[#0]" in result.stderr
    assert "not-base64-secret" not in result.output


def test_config_check_exits_3_when_a_handler_module_cannot_be_imported(
    run: Callable[..., Result],
) -> None:
    result = run("config", "check", GATEWAY_HANDLERS="no_such_handlers_module")
    assert result.exit_code == 3
    assert "no_such_handlers_module" in result.stderr


def test_config_check_connect_exits_4_when_the_store_cannot_open(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    url = f"sqlite:///{blocker / 'events.db'}"
    result = run("config", "check", "--connect", GATEWAY_DATABASE_URL=url)
    assert result.exit_code == 4
    assert "event store is unavailable" in result.stderr


def test_config_check_names_the_file_of_a_generated_secret_not_the_secret(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    result = run("config", "check", "--json", GATEWAY_CONFIG="")
    assert result.exit_code == 0
    generated = (tmp_path / "var" / "dev-secret-integration").read_text().strip()
    assert generated not in result.output
    [source] = json_of(result)["sources"]
    assert "generated for development" in source["secrets"][0]["note"]


# -- events --------------------------------------------------------------------


def test_events_list_shows_a_table_newest_first(
    run: Callable[..., Result], stored: Any
) -> None:
    result = run("events", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RECEIVED", "SOURCE", "EVENT", "ID", "TYPE", "STATUS"]
    assert "gh-delivery-1" in lines[1]
    assert "issues.opened" in lines[1]


def test_events_list_json_filters_by_source_type_and_status(
    run: Callable[..., Result], stored: Any
) -> None:
    by_source = json_of(run("events", "list", "--json", "--source", "github"))
    assert [event["id"] for event in by_source] == ["gh-delivery-1"]
    by_type = json_of(run("events", "list", "--json", "--type", "message.*"))
    assert {event["type"] for event in by_type} == {
        "message.delivered",
        "message.failed",
    }
    dead = json_of(run("events", "list", "--json", "--status", "dead"))
    assert [event["type"] for event in dead] == ["message.failed"]


def test_events_list_since_takes_iso_and_relative_times(
    run: Callable[..., Result], stored: Any
) -> None:
    now = time.time()
    stored.insert_event(_event("evt_recent", now - 600))
    stored.insert_event(_event("evt_old", now - 3 * 3600))
    recent = json_of(run("events", "list", "--json", "--since", "1h"))
    assert [event["id"] for event in recent] == ["evt_recent"]
    frozen_day = datetime.fromtimestamp(FROZEN_AT, tz=UTC).date().isoformat()
    until = json_of(run("events", "list", "--json", "--until", frozen_day + "T01:00"))
    assert len(until) == 3


def test_events_list_refuses_an_unreadable_time_with_exit_2(
    run: Callable[..., Result],
) -> None:
    result = run("events", "list", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "is not a time" in result.stderr


def test_events_show_gives_payload_headers_and_each_handler_attempt(
    run: Callable[..., Result], stored: Any
) -> None:
    result = run("events", "show", "evt_01HQ7MSG0004", "--json")
    assert result.exit_code == 0
    detail = json_of(result)
    assert detail["payload"]["type"] == "message.failed"
    assert "x-integration-signature" not in detail["headers"]
    outcomes = {row["handler"]: row["status"] for row in detail["handlers"]}
    assert outcomes["tests.test_cli.stored.<locals>.record"] == "ok"
    assert outcomes["tests.test_cli.stored.<locals>.refuse"] == "dead"
    refusals = [row for row in detail["attempts"] if row["handler"].endswith("refuse")]
    assert [(row["attempt"], row["status"]) for row in refusals] == [(1, "dead")]
    table = run("events", "show", "evt_01HQ7MSG0004").stdout
    assert "DoNotRetry: cannot deliver to evt_01HQ7MSG0004" in table
    assert '"type": "message.failed"' in table


def test_events_show_counts_repeat_deliveries(
    run: Callable[..., Result], stored: Any
) -> None:
    first = stored.find_event("evt_01HQ7MSG0004")
    assert stored.insert_event(first.event) is False
    assert (
        json_of(run("events", "show", "evt_01HQ7MSG0004", "--json"))["duplicates"] == 1
    )
    table = run("events", "show", "evt_01HQ7MSG0004").stdout
    assert "duplicates 1 (last 20" in table
    untouched = run("events", "show", "gh-delivery-1").stdout
    assert "duplicates 0" in untouched


def _failed_event_id() -> str:
    return json.loads((ROOT / "examples" / "message.failed.json").read_text())["id"]


def test_events_show_unknown_id_exits_1(run: Callable[..., Result]) -> None:
    result = run("events", "show", "evt_nowhere")
    assert result.exit_code == 1
    assert "no event with id 'evt_nowhere'" in result.stderr


def test_store_unavailable_exits_4(run: Callable[..., Result], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("events", "list", GATEWAY_DATABASE_URL=f"sqlite:///{blocker}/x.db")
    assert result.exit_code == 4


# -- replay and dead letters -------------------------------------------------------


def test_replay_one_event_queues_it_again(
    run: Callable[..., Result], stored: Any
) -> None:
    event_id = _failed_event_id()
    result = run("replay", event_id, "--json")
    assert result.exit_code == 0
    assert json_of(result) == {"queued": 1, "event_id": event_id}
    assert stored.find_event(event_id).status == "pending"
    assert "refuse" not in str(stored.handler_runs(stored.find_event(event_id).pk))


def test_replay_needs_exactly_one_selection(run: Callable[..., Result]) -> None:
    assert run("replay").exit_code == 2
    assert run("replay", "evt_x", "--dead-letters").exit_code == 2


def test_replay_of_an_unknown_event_exits_1(run: Callable[..., Result]) -> None:
    assert run("replay", "evt_nowhere").exit_code == 1


def test_replay_dead_letters_shows_progress_and_counts(
    run: Callable[..., Result], stored: Any
) -> None:
    result = run("replay", "--dead-letters", "--progress")
    assert result.exit_code == 0
    assert "Queueing events" in result.stderr
    assert "Queued 1 event(s)" in result.stdout
    assert stored.dead_letter_pks() == []


def test_replay_range_with_include_succeeded_requeues_done_events(
    run: Callable[..., Result], stored: Any
) -> None:
    since = datetime.fromtimestamp(FROZEN_AT - 60, tz=UTC).isoformat()
    until = datetime.fromtimestamp(FROZEN_AT + 60, tz=UTC).isoformat()
    result = run(
        "replay", "--since", since, "--until", until, "--include-succeeded", "--json"
    )
    assert json_of(result)["queued"] == 3
    assert stored.counts_by_status() == {"pending": 3}


def test_dead_letters_lists_the_dead_handler(
    run: Callable[..., Result], stored: Any
) -> None:
    [letter] = json_of(run("dead-letters", "--json"))
    assert letter["handler"] == "tests.test_cli.stored.<locals>.refuse"
    assert letter["event_id"] == _failed_event_id()
    assert "refuse" in run("dead-letters").stdout


def test_dead_letters_purge_asks_first_and_declining_exits_1(
    run: Callable[..., Result], stored: Any
) -> None:
    declined = run("dead-letters", "--purge", input="n\n")
    assert declined.exit_code == 1
    assert len(stored.dead_letters()) == 1
    accepted = run("dead-letters", "--purge", "--yes", "--json")
    assert json_of(accepted) == {"purged_events": 1}
    assert run("dead-letters").stdout.strip() == "No dead letters."


# -- handlers, messages, prune ---------------------------------------------------


def test_handlers_lists_loaded_handlers_per_event_type(
    run: Callable[..., Result],
) -> None:
    modules = "handlers.audit,handlers.message_status"
    rows = json_of(run("handlers", "--json", GATEWAY_HANDLERS=modules))
    assert {"pattern": "*", "handler": "handlers.audit.audit_event", "sources": []} in (
        rows
    )
    assert {
        "pattern": "message.*",
        "handler": "handlers.message_status.track_message_status",
        "sources": ["integration"],
    } in rows
    table = run("handlers", GATEWAY_HANDLERS=modules).stdout
    assert "handlers.audit.audit_event" in table


def test_handlers_for_a_type_shows_what_runs_for_each_source(
    run: Callable[..., Result],
) -> None:
    modules = "handlers.audit,handlers.message_status"
    rows = json_of(
        run("handlers", "--type", "message.read", "--json", GATEWAY_HANDLERS=modules)
    )
    integration = [row["handler"] for row in rows if row["source"] == "integration"]
    github = [row["handler"] for row in rows if row["source"] == "github"]
    assert "handlers.message_status.track_message_status" in integration
    assert "handlers.message_status.track_message_status" not in github


def test_messages_show_gives_the_status_history(
    run: Callable[..., Result], stored: Any
) -> None:
    arrivals = (("sent", 1), ("read", 4), ("delivered", 3))
    for order, (status, rank) in enumerate(arrivals):
        stored.record_message_status(
            "msg_1",
            status=status,
            rank=rank,
            status_at=FROZEN_AT + order,
            event_id=None,
            error=None,
            now=FROZEN_AT + order,
        )
    report = json_of(run("messages", "show", "msg_1", "--json"))
    assert report["status"] == "read"
    assert [row["status"] for row in report["history"]] == ["sent", "read", "delivered"]
    assert "Message msg_1: read" in run("messages", "show", "msg_1").stdout


def test_messages_show_unknown_message_exits_1(run: Callable[..., Result]) -> None:
    assert run("messages", "show", "msg_nowhere").exit_code == 1


def test_prune_deletes_only_done_events_past_retention(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    store = SQLiteStore(str(tmp_path / "events.db"))
    store.migrate()
    now = time.time()
    for event_id, age_days in (("evt_old", 40), ("evt_new", 1)):
        store.insert_event(_event(event_id, now - age_days * 86_400))
        pk = store.find_event(event_id).pk
        store.claim_due("t", now=now, lease_seconds=60)
        store.finish_claim(pk, "t", status="done", next_attempt_at=now, now=now)
    dry = json_of(run("prune", "--dry-run", "--json"))
    assert (dry["matching"], dry["deleted"]) == (1, 0)
    result = run("prune", "--older-than-days", "30")
    assert result.stdout.startswith("Deleted 1 event(s)")
    assert store.find_event("evt_old") is None
    assert store.find_event("evt_new") is not None
    store.close()


# -- send ------------------------------------------------------------------------


@pytest.fixture
def running_gateway(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A gateway on the real clock, served over HTTP on 127.0.0.1."""
    sources = tmp_path / "sources.toml"
    sources.write_text(ALL_SOURCES_TOML)
    app = create_app(
        {
            "GATEWAY_CONFIG": str(sources),
            "GATEWAY_DATA_DIR": str(tmp_path / "server"),
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
            "GATEWAY_DISPATCHER": "0",
            "GATEWAY_LOG_FORMAT": "text",
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app.extensions["gateway"]
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        app.extensions["gateway"].store.close()


@pytest.mark.parametrize(
    ("source", "event_type"),
    [
        ("integration", "message.delivered"),
        ("github", "issues.opened"),
        ("stripe", "invoice.paid"),
        ("standard", "appointment.booked"),
        ("slack", "app_mention"),
        ("shopify", "orders/create"),
    ],
)
def test_send_signs_the_default_example_of_each_scheme(
    run: Callable[..., Result],
    running_gateway: tuple[str, Any],
    source: str,
    event_type: str,
) -> None:
    url, gateway = running_gateway
    result = run("send", "--source", source, "--url", url, "--json")
    assert result.exit_code == 0, result.output
    report = json_of(result)
    assert report["status"] == 202
    assert report["answer"]["received"] is True
    [event] = gateway.store.list_events(source=source)
    assert event.event.type == event_type


def test_send_without_new_id_is_a_repeat_and_with_it_is_new(
    run: Callable[..., Result], running_gateway: tuple[str, Any]
) -> None:
    url, _ = running_gateway
    first = run("send", "message.read", "--url", url)
    assert first.stdout.splitlines()[1] == "202 ACCEPTED"
    repeat = json_of(run("send", "message.read", "--url", url, "--json"))
    assert (repeat["status"], repeat["answer"]["duplicate"]) == (200, True)
    fresh = json_of(run("send", "message.read", "--new-id", "--url", url, "--json"))
    assert fresh["status"] == 202


def test_send_a_given_file_with_an_event_type(
    run: Callable[..., Result], running_gateway: tuple[str, Any], tmp_path: Path
) -> None:
    url, gateway = running_gateway
    body = tmp_path / "custom.json"
    body.write_text('{"id": "evt_custom_1", "data": {"id": "msg_9"}}')
    result = run("send", str(body), "-t", "message.sent", "--url", url)
    assert result.exit_code == 0
    assert gateway.store.find_event("evt_custom_1").event.type == "message.sent"


def test_send_exits_5_when_the_gateway_refuses_the_delivery(
    run: Callable[..., Result], running_gateway: tuple[str, Any]
) -> None:
    url, _ = running_gateway
    result = run(
        "send",
        "--url",
        url,
        "--json",
        GATEWAY_CONFIG="",
        INTEGRATION_SECRET_KEY="other-secret",
    )
    assert result.exit_code == 5
    assert json_of(result)["answer"]["code"] == "invalid_signature"


def test_send_exits_5_when_nothing_listens(run: Callable[..., Result]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run("send", "--url", f"http://127.0.0.1:{port}", "--timeout", "5")
    assert result.exit_code == 5
    assert "could not reach" in result.stderr


def test_send_github_file_without_event_type_is_a_usage_error(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    body = tmp_path / "push.json"
    body.write_text('{"ref": "refs/heads/main"}')
    result = run("send", str(body), "--source", "github")
    assert result.exit_code == 2
    assert "--event-type" in result.stderr


def test_webhook_url_keeps_only_the_given_gateway() -> None:
    assert (
        webhook_url("http://127.0.0.1:8000", "github")
        == "http://127.0.0.1:8000/api/webhooks/github"
    )
    assert (
        webhook_url("https://hooks.example.test/gw/api/webhooks/integration", "stripe")
        == "https://hooks.example.test/gw/api/webhooks/stripe"
    )
    with pytest.raises(Exception, match="http"):
        webhook_url("ftp://127.0.0.1", "github")


def test_parse_moment_reads_relative_and_iso_times() -> None:
    assert parse_moment("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_moment("30m", now=10_000.0) == 10_000.0 - 1800
    assert parse_moment("2026-01-01", now=0) == FROZEN_AT
    assert parse_moment("2026-01-01T00:00:00Z", now=0) == FROZEN_AT
    with pytest.raises(ValueError):
        parse_moment("soon", now=0)


# -- real subprocess and the Flask entry -----------------------------------------


def test_the_module_runs_as_a_real_process(
    cli_env: dict[str, str], running_gateway: tuple[str, Any]
) -> None:
    url, gateway = running_gateway
    env = {**os.environ, **cli_env}
    check = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True
    sent = subprocess.run(
        [sys.executable, "-m", "gateway", "send", "-s", "stripe", "--url", url],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert "202" in sent.stdout
    assert gateway.store.find_event("evt_1QnX2aLkdIwHu7ix") is not None
    assert_no_secret(check.stdout + check.stderr + sent.stdout + sent.stderr)


def test_the_module_exits_3_on_a_bad_config_as_a_real_process(
    cli_env: dict[str, str],
) -> None:
    env = {**os.environ, **cli_env, "GATEWAY_ENV": "staging"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "GATEWAY_ENV must be one of" in result.stderr


def test_flask_gateway_runs_the_same_commands_on_the_app_config(
    make_app: Callable[..., Any],
) -> None:
    app = make_app(ALL_SOURCES_TOML)
    result = app.test_cli_runner().invoke(args=["gateway", "config", "check", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["sources"]) == 6
    assert_no_secret(result.output)


def _event(event_id: str, received_at: float) -> Event:
    return Event(
        id=event_id,
        type="message.sent",
        source="integration",
        received_at=datetime.fromtimestamp(received_at, tz=UTC),
        payload={"id": event_id, "type": "message.sent"},
    )
