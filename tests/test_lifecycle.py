"""Secret lifecycle through the app: expiry, which key matched, warnings."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from gateway.cli_refusals import secrets
from gateway.errors import ConfigError
from gateway.events import Event
from gateway.lifecycle import key_usage
from gateway.schemes import get_scheme
from gateway.store import open_store
from tests import helpers
from tests.conftest import FROZEN_AT

DAY = 86_400
OLD_SECRET = "old-secret-2025"
NEW_SECRET = "new-secret-2026"
ROTATION_TOML = f"""
[sources.integration]
scheme = "hmac-sha256"
secrets = [
  {{ secret = "{NEW_SECRET}", key_id = "2026" }},
  {{ secret = "{OLD_SECRET}", key_id = "2025", not_after = 2026-01-03T00:00:00Z }},
]
"""


def deliver(client: Any, event_id: str, secret: str) -> Any:
    return helpers.deliver(client, event_id, secret=secret)


def matches(source: str, key_id: str) -> float:
    value = REGISTRY.get_sample_value(
        "gateway_secret_matches_total", {"source": source, "key_id": key_id}
    )
    return value or 0.0


def test_both_secrets_match_until_the_old_one_expires(make_app, clock):
    client = make_app(ROTATION_TOML).test_client()
    assert deliver(client, "e1", OLD_SECRET).status_code == 202
    assert deliver(client, "e2", NEW_SECRET).status_code == 202
    clock.advance(3 * DAY)
    assert deliver(client, "e3", OLD_SECRET).status_code == 401
    assert deliver(client, "e4", NEW_SECRET).status_code == 202


def test_each_stored_event_records_the_key_that_matched(make_app):
    app = make_app(ROTATION_TOML)
    client = app.test_client()
    deliver(client, "e1", OLD_SECRET)
    deliver(client, "e2", NEW_SECRET)
    store = app.extensions["gateway"].store
    assert {item.event.id: item.key_id for item in store.list_events()} == {
        "e1": "2025",
        "e2": "2026",
    }


def test_matches_are_counted_by_source_and_key_id(make_app):
    client = make_app(ROTATION_TOML).test_client()
    before_old, before_new = (
        matches("integration", "2025"),
        matches("integration", "2026"),
    )
    deliver(client, "e1", OLD_SECRET)
    deliver(client, "e2", NEW_SECRET)
    deliver(client, "e2", NEW_SECRET)  # a duplicate still matched a key
    deliver(client, "e3", "forged")
    assert matches("integration", "2025") - before_old == 1
    assert matches("integration", "2026") - before_new == 2


def test_secrets_usage_shows_count_and_last_match_per_key(make_app, clock, tmp_path):
    client = make_app(ROTATION_TOML).test_client()
    deliver(client, "e1", OLD_SECRET)
    clock.advance(60)
    deliver(client, "e2", NEW_SECRET)
    deliver(client, "e3", NEW_SECRET)
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path / "var"),
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "GATEWAY_CONFIG": str(tmp_path / "sources.toml"),
    }
    result = CliRunner().invoke(secrets, ["usage", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = {row["key_id"]: row for row in map(json.loads, result.output.splitlines())}
    assert rows["2026"]["deliveries"] == 2
    assert rows["2026"]["last_matched_at"] == "2026-01-01T00:01:00+00:00"
    assert rows["2025"]["deliveries"] == 1
    assert rows["2025"]["last_matched_at"] == "2026-01-01T00:00:00+00:00"
    assert OLD_SECRET not in result.output and NEW_SECRET not in result.output


def test_secrets_usage_lists_a_secret_that_never_matched(make_app, tmp_path):
    make_app(ROTATION_TOML)
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "GATEWAY_CONFIG": str(tmp_path / "sources.toml"),
    }
    result = CliRunner().invoke(secrets, ["usage"], env=env)
    assert result.exit_code == 0, result.output
    assert "2025" in result.output and "last matched never" in result.output


def test_secret_expiring_within_a_week_warns_at_start_up(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="gateway"):
        make_app(ROTATION_TOML)
    warnings = [r for r in caplog.records if r.getMessage() == "secret expires soon"]
    assert [(r.source, r.key_id) for r in warnings] == [("integration", "2025")]
    assert NEW_SECRET not in caplog.text and OLD_SECRET not in caplog.text


def test_expiry_warning_window_is_configurable(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="gateway"):
        make_app(ROTATION_TOML, GATEWAY_SECRET_EXPIRY_WARNING_DAYS="1")
    assert "secret expires soon" not in caplog.text


def test_expired_secret_warns_that_it_no_longer_matches(make_app, clock, caplog):
    clock.advance(5 * DAY)
    with caplog.at_level(logging.WARNING, logger="gateway"):
        make_app(ROTATION_TOML)
    assert "secret has expired and no longer matches" in caplog.text


# -- Standard Webhooks v1a (Ed25519) through the app -------------------------


def ed25519_pair(seed: bytes) -> tuple[str, str]:
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes_raw()
    return (
        "whsk_" + base64.b64encode(seed).decode(),
        "whpk_" + base64.b64encode(public).decode(),
    )


def test_v1a_ed25519_delivery_is_accepted_with_the_public_key(make_app, clock):
    signing, public = ed25519_pair(bytes(range(32)))
    toml = f"""
[sources.svix]
scheme = "standard"
secrets = [{{ secret = "{public}", key_id = "ed-1" }}]
"""
    app = make_app(toml)
    body = b'{"id":"evt_ed1","type":"invoice.paid"}'
    headers = get_scheme("standard").sign(
        body, signing, now=int(clock.now), message_id="msg_ed1"
    )
    response = app.test_client().post(
        "/api/webhooks/svix",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == 202
    assert headers["webhook-signature"].startswith("v1a,")
    [stored] = app.extensions["gateway"].store.list_events()
    assert stored.key_id == "ed-1"


def test_v1a_signature_by_another_key_is_refused_through_the_app(make_app, clock):
    _, public = ed25519_pair(bytes(range(32)))
    other_signing, _ = ed25519_pair(bytes(range(1, 33)))
    toml = f"""
[sources.svix]
scheme = "standard"
secrets = ["{public}"]
"""
    app = make_app(toml)
    body = b'{"id":"evt_ed2","type":"invoice.paid"}'
    headers = get_scheme("standard").sign(body, other_signing, now=int(clock.now))
    response = app.test_client().post(
        "/api/webhooks/svix",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == 401
    assert response.json["code"] == "invalid_signature"


def test_whsk_signing_key_in_the_configuration_stops_start_up(make_app):
    signing, _ = ed25519_pair(bytes(range(32)))
    toml = f'[sources.svix]\nscheme = "standard"\nsecrets = ["{signing}"]\n'
    with pytest.raises(ConfigError, match="whpk_"):
        make_app(toml)


def test_key_usage_reads_postgres_too(postgres_url):
    store = open_store(postgres_url)
    try:
        store.migrate()
        for number, key_id in enumerate(["a", "a", "b"]):
            event = Event(
                id=f"e{number}",
                type="t",
                source="s",
                received_at=datetime.fromtimestamp(FROZEN_AT + number, tz=UTC),
                payload={},
            )
            store.insert_event(event, key_id)
        usage = {item.key_id: item for item in key_usage(store)}
        assert usage["a"].deliveries == 2
        assert usage["b"].last_matched_at == FROZEN_AT + 2
    finally:
        store.close()


def test_metrics_route_shows_matches_by_key_id(make_app):
    client = make_app(ROTATION_TOML).test_client()
    deliver(client, "e1", OLD_SECRET)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gateway_secret_matches_total{key_id="2025",source="integration"}' in text
    assert "gateway_handler_breaker_opened_total" in text
    assert OLD_SECRET not in text
