"""Limits that protect without hurting providers: keys, buckets, allow-lists."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError
from tests.conftest import SECRET
from tests.helpers import deliver

TWO_SOURCES_TOML = f"""
[sources.integration]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]
rate_limit = "5 per minute"

[sources.billing]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]
rate_limit = "5 per minute"
"""
ALLOW_TOML = f"""
[sources.integration]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]
rate_limit = "3 per minute"
allow_networks = ["192.0.2.0/24", "2001:db8::/32"]
"""


def send(
    client: Any, event_id: str, ip: str, *, source: str = "integration", forged=False
) -> Any:
    return deliver(
        client,
        event_id,
        source=source,
        secret="forged" if forged else SECRET,
        environ_base={"REMOTE_ADDR": ip},
    )


def test_forgery_flood_is_cut_off_while_another_ip_bursts_through(make_app):
    app = make_app(RATELIMIT_DEFAULT="1000 per minute")
    client = app.test_client()
    forged = [
        send(client, f"f{n}", "203.0.113.66", forged=True).status_code
        for n in range(30)
    ]
    assert forged[:20] == [401] * 20
    assert set(forged[20:]) == {429}
    burst = [send(client, f"ok{n}", "198.51.100.7").status_code for n in range(40)]
    assert burst == [202] * 40


def test_verified_deliveries_do_not_draw_from_the_strict_bucket(make_app):
    client = make_app(RATELIMIT_DEFAULT="1000 per minute").test_client()
    answers = [send(client, f"ok{n}", "198.51.100.7").status_code for n in range(30)]
    assert answers == [202] * 30


def test_limit_is_kept_per_client_ip_and_source(make_app):
    client = make_app(TWO_SOURCES_TOML).test_client()
    first = [send(client, f"a{n}", "198.51.100.1").status_code for n in range(6)]
    other_source = send(client, "b1", "198.51.100.1", source="billing")
    assert first == [202] * 5 + [429]
    assert other_source.status_code == 202


@pytest.mark.parametrize("forged", [False, True])
def test_every_429_carries_retry_after(make_app, forged):
    client = make_app(TWO_SOURCES_TOML).test_client()
    answers = [send(client, f"e{n}", "198.51.100.9", forged=forged) for n in range(25)]
    limited = [answer for answer in answers if answer.status_code == 429]
    assert limited
    for answer in limited:
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json["code"] == "rate_limited"


def test_provider_network_bypasses_the_ip_limit(make_app):
    client = make_app(ALLOW_TOML).test_client()
    inside = [send(client, f"p{n}", "192.0.2.44").status_code for n in range(10)]
    inside_v6 = [send(client, f"q{n}", "2001:db8::5").status_code for n in range(5)]
    outside = [send(client, f"o{n}", "198.51.100.3").status_code for n in range(4)]
    assert inside == [202] * 10
    assert inside_v6 == [202] * 5
    assert outside == [202, 202, 202, 429]


def test_provider_network_still_meets_the_strict_bucket(make_app):
    client = make_app(ALLOW_TOML).test_client()
    answers = [
        send(client, f"f{n}", "192.0.2.44", forged=True).status_code for n in range(22)
    ]
    assert answers[:20] == [401] * 20
    assert answers[20:] == [429, 429]


def test_allow_list_applies_to_the_client_ip_after_trusted_proxies(make_app):
    client = make_app(ALLOW_TOML, GATEWAY_TRUSTED_PROXIES="1").test_client()
    answers = []
    for n in range(6):
        answer = deliver(
            client,
            f"x{n}",
            headers={"X-Forwarded-For": "192.0.2.10"},
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        )
        answers.append(answer.status_code)
    assert answers == [202] * 6


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"192.0.2.0/24"', "must be a list"),
        ('["192.0.2.7/24"]', "has host bits set"),
        ('["not-a-network"]', "is not a network"),
        ("[1]", "must be a list"),
    ],
)
def test_bad_allow_networks_stop_start_up(tmp_path, value, message):
    path = tmp_path / "sources.toml"
    path.write_text(
        f'[sources.integration]\nsecrets = ["{SECRET}"]\nallow_networks = {value}\n'
    )
    with pytest.raises(ConfigError, match=message) as refusal:
        load_settings({"GATEWAY_CONFIG": str(path)})
    assert "[sources.integration].allow_networks" in str(refusal.value)
