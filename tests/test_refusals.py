"""Explainable refusals: the refusal log, its diagnosis and its commands."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli_refusals import parse_request_file, refusals, verify_file
from gateway.refusals import Refusal, RefusalLog
from tests.conftest import FROZEN_AT, SECRET, STANDARD_SECRET
from tests.helpers import hex_hmac, post

OLD_SECRET = "old-secret-2025"
NEW_SECRET = "new-secret-2026"
ROTATION_TOML = f"""
[sources.integration]
scheme = "hmac-sha256"
secrets = [
  {{ secret = "{NEW_SECRET}", key_id = "2026" }},
  {{ secret = "{OLD_SECRET}", key_id = "2025", not_after = 2025-12-31 }},
]

[sources.stripe]
scheme = "stripe"
secrets = [{{ secret = "{SECRET}", key_id = "main" }}]

[sources.standard]
scheme = "standard"
secrets = ["{STANDARD_SECRET}"]
"""
BODY = b'{"id":"evt_r1","type":"message.delivered","data":{"id":"m1"}}'


def recorded(app: Any) -> list[Refusal]:
    gateway = app.extensions["gateway"]
    assert gateway.refusals.flush(5.0)
    return list(reversed(gateway.refusals.log.list(limit=1000)))


@pytest.fixture
def rotation_app(make_app):
    return make_app(ROTATION_TOML)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment the commands need to see the app's store and sources."""
    return {
        "GATEWAY_DATA_DIR": str(tmp_path / "var"),
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "GATEWAY_CONFIG": str(tmp_path / "sources.toml"),
        "GATEWAY_LOG_FORMAT": "text",
    }


# -- recording --------------------------------------------------------------


def test_refused_signature_is_recorded_with_an_operator_only_reason(rotation_app):
    client = rotation_app.test_client()
    headers = {"X-Integration-Signature": hex_hmac(BODY, "wrong"), "X-Request-Id": "r1"}
    response = post(client, "integration", BODY, headers)
    assert response.status_code == 401
    assert response.json["code"] == "invalid_signature"
    assert "tried" not in response.get_data(as_text=True)
    [refusal] = recorded(rotation_app)
    assert refusal.source == "integration"
    assert refusal.code == "invalid_signature"
    assert refusal.status == 401
    assert refusal.request_id == "r1"
    assert refusal.client_ip == "127.0.0.1"
    assert refusal.body_bytes == len(BODY)
    assert refusal.body_sha256 == hashlib.sha256(BODY).hexdigest()
    assert "no configured secret matched (1 tried)" in (refusal.detail or "")
    assert "x-integration-signature" in (refusal.header_names or "")


def test_refusal_record_holds_no_body_signature_or_secret(rotation_app):
    client = rotation_app.test_client()
    signature = hex_hmac(BODY, "wrong")
    post(client, "integration", BODY, {"X-Integration-Signature": signature})
    [refusal] = recorded(rotation_app)
    text = json.dumps(refusal.__dict__)
    for forbidden in (signature, NEW_SECRET, OLD_SECRET, "evt_r1", "message.delivered"):
        assert forbidden not in text


def test_missing_header_reason_names_the_header(rotation_app):
    post(rotation_app.test_client(), "integration", BODY, {})
    [refusal] = recorded(rotation_app)
    assert refusal.code == "missing_signature"
    assert refusal.detail == "header x-integration-signature is absent or empty"


def test_malformed_header_reason_says_which_part(rotation_app):
    header = "t=1767225600,v0=abc"
    post(rotation_app.test_client(), "stripe", BODY, {"Stripe-Signature": header})
    [refusal] = recorded(rotation_app)
    assert refusal.detail == "header stripe-signature has no v1 entry"


def test_timestamp_skew_reason_gives_the_seconds(rotation_app, sign):
    headers = sign("stripe", BODY, now=FROZEN_AT - 412)
    post(rotation_app.test_client(), "stripe", BODY, headers)
    [refusal] = recorded(rotation_app)
    assert refusal.code == "timestamp_out_of_tolerance"
    assert "skew 412 s exceeds 300 s (behind the gateway clock)" in refusal.detail
    assert "the signature is right but old or early" in refusal.detail


def test_reason_says_an_expired_secret_would_have_matched(rotation_app):
    headers = {"X-Integration-Signature": hex_hmac(BODY, OLD_SECRET)}
    response = post(rotation_app.test_client(), "integration", BODY, headers)
    assert response.status_code == 401
    [refusal] = recorded(rotation_app)
    assert "it matches secret '2025', which expired at 2025-12-31" in refusal.detail


def test_reason_says_the_body_changed_after_signing(rotation_app):
    headers = {"X-Integration-Signature": hex_hmac(BODY, NEW_SECRET)}
    post(rotation_app.test_client(), "integration", BODY + b"\n", headers)
    [refusal] = recorded(rotation_app)
    assert "secret '2026' matches the body without its trailing newline" in (
        refusal.detail
    )


def test_reason_spots_a_reserialised_json_body(rotation_app):
    sent = json.dumps(json.loads(BODY)).encode()  # spaces after ':' and ','
    headers = {"X-Integration-Signature": hex_hmac(BODY, NEW_SECRET)}
    post(rotation_app.test_client(), "integration", sent, headers)
    [refusal] = recorded(rotation_app)
    assert "matches the body re-serialised compactly" in refusal.detail


def test_other_refusals_are_recorded_with_their_code(rotation_app):
    client = rotation_app.test_client()
    headers = {"X-Integration-Signature": hex_hmac(b"[1]", NEW_SECRET)}
    post(client, "integration", b"[1]", headers)
    post(client, "nowhere", BODY, {})
    codes = [(item.source, item.code) for item in recorded(rotation_app)]
    assert codes == [("integration", "invalid_payload"), ("nowhere", "unknown_source")]


def test_accepted_delivery_is_not_recorded(rotation_app):
    headers = {"X-Integration-Signature": hex_hmac(BODY, NEW_SECRET)}
    assert post(rotation_app.test_client(), "integration", BODY, headers).status_code
    assert recorded(rotation_app) == []


def test_cheap_refusal_floods_are_recorded_once_a_minute(rotation_app):
    client = rotation_app.test_client()
    for _ in range(5):
        assert client.get("/api/webhooks/integration").status_code == 405
    assert [item.code for item in recorded(rotation_app)] == ["method_not_allowed"]


def test_refusal_log_keeps_at_most_max_rows(store):
    log = RefusalLog(store, max_rows=3, retention_days=7)
    log.migrate()
    log.insert(
        [Refusal("s", FROZEN_AT + n, 401, "invalid_signature") for n in range(5)]
    )
    assert log.prune(now=FROZEN_AT + 10) == 2
    assert [item.at for item in log.list()] == [
        FROZEN_AT + 4,
        FROZEN_AT + 3,
        FROZEN_AT + 2,
    ]


def test_refusal_log_forgets_refusals_past_retention(store):
    log = RefusalLog(store, max_rows=100, retention_days=1)
    log.migrate()
    log.insert(
        [Refusal("s", FROZEN_AT, 401, "x"), Refusal("s", FROZEN_AT + 90_000, 401, "y")]
    )
    assert log.prune(now=FROZEN_AT + 90_001) == 1
    assert [item.code for item in log.list()] == ["y"]


def test_refusal_log_works_on_postgres(postgres_url):
    from gateway.store import open_store

    store = open_store(postgres_url)
    try:
        store.migrate()
        log = RefusalLog(store, max_rows=2)
        log.migrate()
        log.insert([Refusal("s", FROZEN_AT + n, 401, f"c{n}") for n in range(3)])
        assert log.prune(now=FROZEN_AT) == 1
        assert [item.code for item in log.list()] == ["c2", "c1"]
        assert log.get(log.list()[0].id or 0).code == "c2"
    finally:
        store.close()


# -- commands ---------------------------------------------------------------


def test_refusals_list_shows_the_newest_first(rotation_app, cli_env):
    client = rotation_app.test_client()
    post(client, "integration", BODY, {})
    post(client, "integration", BODY, {"X-Integration-Signature": "zz"})
    recorded(rotation_app)
    result = CliRunner().invoke(refusals, ["list"], env=cli_env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "invalid_signature" in lines[0]
    assert "missing_signature" in lines[1]


def test_refusals_explain_gives_reason_and_advice(rotation_app, cli_env):
    headers = {"X-Integration-Signature": hex_hmac(BODY, OLD_SECRET)}
    post(rotation_app.test_client(), "integration", BODY, headers)
    [refusal] = recorded(rotation_app)
    result = CliRunner().invoke(refusals, ["explain", str(refusal.id)], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "which expired at 2025-12-31" in result.output
    assert hashlib.sha256(BODY).hexdigest() in result.output
    assert "one side still has the old secret" in result.output
    assert OLD_SECRET not in result.output and NEW_SECRET not in result.output


def test_refusals_explain_of_an_unknown_id_fails_clearly(rotation_app, cli_env):
    result = CliRunner().invoke(refusals, ["explain", "999"], env=cli_env)
    assert result.exit_code == 1
    assert "No refusal with id 999" in result.output


def test_refusals_explain_rechecks_a_saved_copy(rotation_app, cli_env, tmp_path):
    headers = {"X-Integration-Signature": hex_hmac(BODY, OLD_SECRET)}
    post(rotation_app.test_client(), "integration", BODY, headers)
    [refusal] = recorded(rotation_app)
    saved = tmp_path / "saved.http"
    saved.write_bytes(
        b"POST /api/webhooks/integration HTTP/1.1\r\nX-Integration-Signature: "
        + headers["X-Integration-Signature"].encode()
        + b"\r\n\r\n"
        + BODY
    )
    result = CliRunner().invoke(
        refusals, ["explain", str(refusal.id), "--file", str(saved)], env=cli_env
    )
    assert result.exit_code == 0, result.output
    assert "[FAIL] secret" in result.output
    assert "not the refused body" not in result.output


def write_http_file(path: Path, headers: dict[str, str], body: bytes) -> Path:
    head = "".join(f"{name}: {value}\n" for name, value in headers.items())
    path.write_bytes(
        b"POST /api/webhooks/integration HTTP/1.1\n" + head.encode() + b"\n" + body
    )
    return path


def test_verify_file_accepts_a_good_request_and_names_the_secret(
    rotation_app, cli_env, tmp_path
):
    headers = {"X-Integration-Signature": hex_hmac(BODY, NEW_SECRET)}
    saved = write_http_file(tmp_path / "ok.http", headers, BODY)
    result = CliRunner().invoke(verify_file, [str(saved)], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "[ok  ] secret: secret '2026' matches" in result.output
    assert "result: accepted" in result.output
    assert NEW_SECRET not in result.output
    assert headers["X-Integration-Signature"] not in result.output


def test_verify_file_says_which_check_fails(rotation_app, cli_env, tmp_path):
    saved = write_http_file(tmp_path / "bad.http", {"Content-Type": "x"}, BODY)
    result = CliRunner().invoke(verify_file, [str(saved)], env=cli_env)
    assert result.exit_code == 1
    assert "[FAIL] headers: header x-integration-signature is absent" in result.output
    assert "result: refused" in result.output


def test_verify_file_reads_the_json_format_and_judges_time_at_receipt(
    rotation_app, cli_env, tmp_path, sign
):
    headers = sign("stripe", BODY, now=FROZEN_AT)
    document = {
        "source": "stripe",
        "received_at": FROZEN_AT + 10,
        "headers": headers,
        "body_base64": base64.b64encode(BODY).decode(),
    }
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(document))
    accepted = CliRunner().invoke(verify_file, [str(saved)], env=cli_env)
    late = CliRunner().invoke(
        verify_file, [str(saved), "--at", "2026-01-01T01:00:00Z"], env=cli_env
    )
    assert accepted.exit_code == 0, accepted.output
    assert late.exit_code == 1
    assert "[FAIL] timestamp: timestamp skew 3600 s exceeds 300 s" in late.output
    assert "[ok  ] secret: secret 'main' matches" in late.output


def test_verify_file_needs_a_source_when_the_file_names_none(
    cli_env, tmp_path, make_app
):
    make_app(ROTATION_TOML)
    saved = tmp_path / "plain.txt"
    saved.write_bytes(b"X-Integration-Signature: ab\n\n{}")
    result = CliRunner().invoke(verify_file, [str(saved)], env=cli_env)
    assert result.exit_code == 1
    assert "--source" in result.output


def test_request_file_without_a_blank_line_is_refused_clearly():
    with pytest.raises(ValueError, match="no blank line"):
        parse_request_file(b"X-A: b\n")


def test_request_file_body_is_kept_byte_for_byte():
    saved = parse_request_file(b"A: 1\r\nB: two\r\n\r\n{\r\n}\n")
    assert saved.headers == {"a": "1", "b": "two"}
    assert saved.body == b"{\r\n}\n"
