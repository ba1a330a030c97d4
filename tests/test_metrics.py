"""``/metrics``: values after known deliveries and handler runs, protection.

The last test runs a real two-worker gunicorn and checks that a scrape,
whichever worker answers, adds up what both workers counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.dispatch import DoNotRetry
from gateway.errors import StoreError
from gateway.messages import record_status
from tests.conftest import example
from tests.helpers import hex_hmac, signed_headers
from tests.servers import GatewayServer, free_port

METRICS_TOKEN = "metrics-token-0123456789abcdef"


def delivery(event_id: str, event_type: str = "message.sent") -> bytes:
    payload = {"id": event_id, "type": event_type, "data": {"id": f"msg_{event_id}"}}
    return json.dumps(payload).encode()


def post(client: Any, body: bytes, signature: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Integration-Signature"] = signature
    return client.post("/api/webhooks/integration", data=body, headers=headers)


def post_signed(client: Any, body: bytes) -> Any:
    return post(client, body, hex_hmac(body))


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample called ``name`` with these labels."""
    found = [
        item.value
        for family in text_string_to_metric_families(text)
        for item in family.samples
        if item.name == name
        and all(item.labels.get(key) == value for key, value in labels.items())
    ]
    assert len(found) <= 1, f"{name} {labels} matches {len(found)} samples"
    return found[0] if found else None


def scrape(client: Any, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


# -- deliveries -----------------------------------------------------------------


def test_deliveries_are_counted_by_source_status_and_code(client):
    for number in range(3):
        post_signed(client, delivery(f"evt_{number}"))
    post_signed(client, delivery("evt_0"))
    post(client, delivery("evt_bad_1"), "0" * 64)
    post(client, delivery("evt_bad_2"), "1" * 64)
    post(client, delivery("evt_unsigned"))
    client.post("/api/webhooks/nowhere", data=b"{}")
    text = scrape(client)
    name = "gateway_deliveries_total"
    integration = {"source": "integration"}
    assert sample(text, name, **integration, status="202", code="none") == 3
    assert sample(text, name, **integration, status="200", code="none") == 1
    assert (
        sample(text, name, **integration, status="401", code="invalid_signature") == 2
    )
    assert (
        sample(text, name, **integration, status="401", code="missing_signature") == 1
    )
    assert (
        sample(text, name, source="(unknown)", status="404", code="unknown_source") == 1
    )


def test_verification_failures_are_counted_by_reason(client):
    post(client, delivery("evt_bad_1"), "0" * 64)
    post(client, delivery("evt_bad_2"), "1" * 64)
    post(client, delivery("evt_unsigned"))
    post_signed(client, delivery("evt_good"))
    text = scrape(client)
    name = "gateway_verification_failures_total"
    assert sample(text, name, source="integration", reason="invalid_signature") == 2
    assert sample(text, name, source="integration", reason="missing_signature") == 1
    assert sample(text, name, reason="timestamp_out_of_tolerance") is None


def test_stale_timestamp_is_counted_as_its_own_reason(client, sign, clock):
    body = example("stripe.invoice.paid.json")
    headers = sign("stripe", body, now=clock.now - 3600)
    client.post(
        "/api/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    text = scrape(client)
    assert (
        sample(
            text,
            "gateway_verification_failures_total",
            source="stripe",
            reason="timestamp_out_of_tolerance",
        )
        == 1
    )


def test_every_answered_delivery_is_timed(client):
    for number in range(4):
        post_signed(client, delivery(f"evt_{number}"))
    post(client, delivery("evt_unsigned"))
    text = scrape(client)
    assert sample(text, "gateway_ack_seconds_count", source="integration") == 5
    assert (
        sample(text, "gateway_ack_seconds_bucket", source="integration", le="+Inf") == 5
    )


def test_made_up_source_names_share_one_label(client):
    for number in range(5):
        client.post(f"/api/webhooks/made-up-{number}", data=b"{}")
    text = scrape(client)
    assert "made-up" not in text
    assert (
        sample(
            text,
            "gateway_deliveries_total",
            source="(unknown)",
            status="404",
            code="unknown_source",
        )
        == 5
    )


def test_probes_and_scrapes_are_not_counted_as_deliveries(client):
    client.get("/healthz")
    client.get("/readyz")
    scrape(client)
    assert "gateway_deliveries_total{" not in scrape(client)


# -- the inbox and handlers ----------------------------------------------------


def test_inbox_depth_is_read_from_the_store(client, gateway, clock):
    for number in range(3):
        post_signed(client, delivery(f"evt_{number}"))
    clock.advance(42)
    text = scrape(client)
    assert sample(text, "gateway_inbox_pending_events") == 3
    assert sample(text, "gateway_inbox_oldest_pending_age_seconds") == 42
    gateway.dispatcher.run_until_idle()
    text = scrape(client)
    assert sample(text, "gateway_inbox_pending_events") == 0
    assert sample(text, "gateway_inbox_oldest_pending_age_seconds") == 0


def test_store_down_at_scrape_time_reports_store_up_zero(client, gateway, monkeypatch):
    def down() -> None:
        raise StoreError("down")

    monkeypatch.setattr(gateway.store, "backlog", down)
    text = scrape(client)
    assert sample(text, "gateway_store_up") == 0
    assert sample(text, "gateway_inbox_pending_events") is None


def test_handler_runs_are_timed_and_failures_counted(make_app, clock, connect):
    app = make_app(GATEWAY_MAX_RETRIES="1")
    gateway = app.extensions["gateway"]
    client = app.test_client()

    def succeeds(source: str, event: Any) -> None:
        return None

    def always_fails(source: str, event: Any) -> None:
        raise RuntimeError("handler bug")

    connect("message.sent", succeeds)
    connect("message.sent", always_fails)
    post_signed(client, delivery("evt_1"))
    clock.advance(5)
    gateway.dispatcher.run_until_idle()
    clock.advance(60)
    gateway.dispatcher.run_until_idle()

    text = scrape(client)
    good = {"handler": f"{__name__}.{succeeds.__qualname__}"}
    bad = {"handler": f"{__name__}.{always_fails.__qualname__}"}
    assert sample(text, "gateway_handler_duration_seconds_count", **good) == 1
    assert sample(text, "gateway_handler_duration_seconds_count", **bad) == 2
    assert sample(text, "gateway_handler_failures_total", **good) is None
    assert sample(text, "gateway_handler_failures_total", **bad) == 2
    assert sample(text, "gateway_handler_retries_total", **bad) == 1
    assert sample(text, "gateway_dead_letters_total", **bad) == 1
    # Received at t, first called at t + 5 s on the frozen clock.
    assert sample(text, "gateway_dispatch_latency_seconds_count", **bad) == 1
    latency = sample(text, "gateway_dispatch_latency_seconds_sum", **good)
    assert latency is not None and 4.9 < latency <= 5


def test_handler_that_refuses_retries_is_dead_lettered_at_once(
    client, gateway, connect
):
    def refuses(source: str, event: Any) -> None:
        raise DoNotRetry("cannot be fixed by a retry")

    connect("message.sent", refuses)
    post_signed(client, delivery("evt_1"))
    gateway.dispatcher.run_until_idle()
    text = scrape(client)
    handler = {"handler": f"{__name__}.{refuses.__qualname__}"}
    assert sample(text, "gateway_dead_letters_total", **handler) == 1
    assert sample(text, "gateway_handler_retries_total", **handler) is None


# -- message delivery figures (CONTRACT.md section 7) ----------------------------


def test_message_figures_count_statuses_and_shares_of_sent(client, gateway):
    store = gateway.store
    record_status("msg_1", "sent", store=store, now=1.0)
    record_status("msg_2", "delivered", store=store, now=1.0)
    record_status("msg_3", "read", store=store, now=1.0)
    record_status("msg_4", "failed", store=store, now=1.0)
    text = scrape(client)
    assert sample(text, "gateway_messages", status="sent") == 1
    assert sample(text, "gateway_messages", status="delivered") == 1
    assert sample(text, "gateway_messages", status="read") == 1
    assert sample(text, "gateway_messages", status="failed") == 1
    assert sample(text, "gateway_messages_tracked") == 4
    assert sample(text, "gateway_messages_ratio", status="delivered") == 0.5
    assert sample(text, "gateway_messages_ratio", status="read") == 0.25
    assert sample(text, "gateway_messages_ratio", status="failed") == 0.25


def test_message_figures_are_zero_before_any_message(client):
    text = scrape(client)
    assert sample(text, "gateway_messages_tracked") == 0
    assert sample(text, "gateway_messages_ratio", status="delivered") == 0


# -- rate-limit storage --------------------------------------------------------


def test_limiter_storage_degraded_flag_follows_the_storage(make_app):
    app = make_app(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}")
    client = app.test_client()
    assert sample(scrape(client), "gateway_ratelimit_storage_degraded") == 0
    post_signed(client, delivery("evt_1"))
    assert sample(scrape(client), "gateway_ratelimit_storage_degraded") == 1


def test_limiter_storage_flag_is_zero_on_a_working_redis(make_app, redis_url):
    app = make_app(RATELIMIT_STORAGE_URI=redis_url)
    client = app.test_client()
    post_signed(client, delivery(f"evt_{os.urandom(4).hex()}"))
    assert sample(scrape(client), "gateway_ratelimit_storage_degraded") == 0


# -- format and protection ------------------------------------------------------


def test_metrics_are_served_in_the_prometheus_text_format(client):
    response = client.get("/metrics")
    assert response.content_type.startswith("text/plain; version=0.0.4")
    assert "# TYPE gateway_deliveries_total counter" in response.get_data(as_text=True)


def test_metrics_speak_openmetrics_when_asked(client):
    response = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_metrics_without_token_are_refused_when_one_is_configured(make_app):
    client = make_app(GATEWAY_METRICS_TOKEN=METRICS_TOKEN).test_client()
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json["code"] == "missing_signature"
    assert "gateway_" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token",
        f"Bearer {METRICS_TOKEN}x",
        f"Bearer {METRICS_TOKEN[:-1]}",
        f"Basic {METRICS_TOKEN}",
        METRICS_TOKEN,
    ],
)
def test_metrics_with_a_wrong_token_are_refused(make_app, authorization):
    client = make_app(GATEWAY_METRICS_TOKEN=METRICS_TOKEN).test_client()
    response = client.get("/metrics", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json["code"] in ("missing_signature", "invalid_signature")
    assert METRICS_TOKEN not in response.get_data(as_text=True)


def test_metrics_with_the_token_are_served(make_app):
    client = make_app(GATEWAY_METRICS_TOKEN=METRICS_TOKEN).test_client()
    response = client.get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200
    assert "gateway_store_up 1.0" in response.get_data(as_text=True)


def test_metrics_are_open_when_no_token_is_configured(client):
    assert client.get("/metrics").status_code == 200


# -- several gunicorn workers ----------------------------------------------------


@pytest.fixture
def two_worker_gunicorn(tmp_path: Path) -> Iterator[tuple[GatewayServer, Path]]:
    """A real ``gunicorn app:app`` with two workers; yields (server, TMPDIR).

    TMPDIR points into ``tmp_path``, so the metrics directory that
    gunicorn.conf.py creates can be inspected and seen removed.
    """
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {
        "GATEWAY_THREADS": "2",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "RATELIMIT_DEFAULT": "10000 per minute",
        "TMPDIR": str(temporary),
    }
    with GatewayServer(tmp_path, workers=2, env=env) as server:
        yield server, temporary


def worker_pids_with_deliveries(metrics_dir: Path) -> set[int]:
    """The worker processes whose own files hold delivery counts."""
    from prometheus_client.multiprocess import MultiProcessCollector

    pids = set()
    for path in metrics_dir.glob("counter_*.db"):
        families = MultiProcessCollector._read_metrics([str(path)])
        for family in families.values():
            if family.name == "gateway_deliveries" and any(
                item.value > 0 for item in family.samples
            ):
                pids.add(int(path.stem.split("_")[1]))
    return pids


@pytest.mark.server
def test_two_gunicorn_workers_add_up_their_counts(two_worker_gunicorn):
    server, temporary = two_worker_gunicorn
    (metrics_dir,) = temporary.glob("gateway-metrics-*")
    sent = 0
    # A new connection per delivery lets either worker take it; keep
    # sending (bounded) until both workers have counted some.
    for number in range(200):
        body = delivery(f"evt_gunicorn_{number}")
        headers = signed_headers(body, Connection="close")
        response = server.post("integration", body, headers)
        assert response.status_code == 202
        sent += 1
        if sent >= 10 and len(worker_pids_with_deliveries(metrics_dir)) == 2:
            break
    assert len(worker_pids_with_deliveries(metrics_dir)) == 2
    for _ in range(6):
        text = server.get("/metrics", headers={"Connection": "close"}).text
        name = "gateway_deliveries_total"
        assert sample(text, name, status="202", code="none") == sent
        assert sample(text, "gateway_ack_seconds_count", source="integration") == sent


@pytest.mark.server
def test_gunicorn_removes_its_metrics_directory_at_exit(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with GatewayServer(tmp_path, workers=1, env={"TMPDIR": str(temporary)}):
        assert len(list(temporary.glob("gateway-metrics-*"))) == 1
    assert list(temporary.glob("gateway-metrics-*")) == []
