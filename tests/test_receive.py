"""Whole deliveries through the app: the contract's order of checks and answers.

Includes every field case of ``shared/cases`` as a regression test of its
whole kind.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import io
import json
from typing import Any

import pytest

from tests.conftest import ALL_SOURCES_TOML, SECRET, example
from tests.helpers import hex_hmac, post

CASE1_BODY = (
    b"payload=%7B%22zen%22%3A%22Keep%20it%20simple.%22%2C%22hook_id%22%3A1%2C%22"
    b"repository%22%3A%7B%22full_name%22%3A%22octo%2Fdemo%22%7D%7D"
)
CASE1_SIGNATURE = (
    "sha256=a5243e9172c849c1c646446a6eff001fdd0fb5534d93acfbed72132400aeebad"
)
CASE2_BODY = (
    b'{"id": "evt_1001", "type": "order.paid", "data": {"amount": 1000, "note": '
    b'"caf\xc3\xa9 \\u00e9 \\/x", "ratio": 1.0}}'
)
CASE2_SIGNATURE = "d360a210e266be5023e45f7b70139b7c1bc3d27f165a0f9e2816ae7407849745"
PUSH_BODY = b'{"ref":"refs/heads/main","repository":{"full_name":"octo/demo"}}'
PUSH_SIGNATURE = (
    "sha256=6d76107dbe03ed4ed1a06ce5345340d9a6477c8415bc34523f5c72a66d6d682b"
)
SLACK_CHALLENGE_BODY = (
    b'{"token":"tok_test_placeholder","challenge":"chal_7f2b9e4a_test",'
    b'"type":"url_verification"}'
)
SLACK_CHALLENGE_SIGNATURE = (
    "v0=00e1f8da06d10e8d2188640daf688ae51e40b7e4d61d006020544668bdd6ceb9"
)


def stored_count(gateway: Any) -> int:
    return sum(gateway.store.counts_by_status().values())


def recorder(calls: list[Any]) -> Any:
    def record(source: str, event: Any) -> None:
        calls.append((source, event))

    return record


# -- answers and the order of checks -----------------------------------------


def test_signed_delivery_is_stored_and_answered_202(client, gateway):
    body = example("message.delivered.json")
    response = post(
        client, "integration", body, {"X-Integration-Signature": hex_hmac(body)}
    )
    assert response.status_code == 202
    assert response.json == {
        "received": True,
        "id": "evt_01HQ7MSG0002",
        "duplicate": False,
    }
    assert stored_count(gateway) == 1


def test_repeat_delivery_is_acknowledged_not_dispatched(client, gateway, connect):
    calls: list[Any] = []
    connect("message.delivered", recorder(calls))
    body = example("message.delivered.json")
    headers = {"X-Integration-Signature": hex_hmac(body)}
    assert post(client, "integration", body, headers).status_code == 202
    gateway.dispatcher.run_until_idle()
    second = post(client, "integration", body, headers)
    gateway.dispatcher.run_until_idle()
    assert second.status_code == 200
    assert second.json["duplicate"] is True
    assert len(calls) == 1


def test_unknown_source_is_404_before_anything_else(client):
    response = client.get("/api/webhooks/nowhere")
    assert response.status_code == 404
    assert response.json["code"] == "unknown_source"


def test_other_method_than_post_is_405(client):
    response = client.put("/api/webhooks/integration", data=b"{}")
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST"


def test_body_over_the_limit_is_413_from_content_length(make_app):
    app = make_app(INTEGRATION_SECRET_KEY=SECRET)
    source = app.extensions["gateway"].settings.sources["integration"]
    body = b"x" * (source.max_body_bytes + 1)
    response = post(app.test_client(), "integration", body, {})
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"


def test_body_limit_is_configurable_per_source(make_app):
    app = make_app(
        '[sources.integration]\nscheme = "hmac-sha256"\n'
        f'secrets = ["{SECRET}"]\nmax_body_bytes = 64\n'
    )
    small = b'{"id":"e1","type":"t"}'
    big = b'{"id":"e2","type":"t","pad":"' + b"y" * 64 + b'"}'
    client = app.test_client()
    ok = post(
        client, "integration", small, {"X-Integration-Signature": hex_hmac(small)}
    )
    refused = post(
        client, "integration", big, {"X-Integration-Signature": hex_hmac(big)}
    )
    assert ok.status_code == 202
    assert refused.status_code == 413


def test_chunked_body_over_the_limit_is_413_without_length(make_app):
    app = make_app(
        '[sources.integration]\nscheme = "hmac-sha256"\n'
        f'secrets = ["{SECRET}"]\nmax_body_bytes = 64\n'
    )

    # A chunked body has no Content-Length; the server marks the stream
    # as terminated, as gunicorn does.
    response = app.test_client().post(
        "/api/webhooks/integration",
        input_stream=io.BytesIO(b"z" * 3200),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_missing_event_type_is_invalid_payload(client):
    body = b'{"id":"evt_x"}'
    response = post(
        client, "integration", body, {"X-Integration-Signature": hex_hmac(body)}
    )
    assert response.status_code == 400
    assert response.json["code"] == "invalid_payload"


@pytest.mark.parametrize(
    "body",
    [
        b"[1,2,3]",
        b'"text"',
        b"{not json",
        b"",
        b'{"type": NaN, "id": "a"}',
        b"\xff\xfe",
    ],
)
def test_bad_json_is_400_not_500(client, body):
    response = post(
        client, "integration", body, {"X-Integration-Signature": hex_hmac(body)}
    )
    assert response.status_code == 400
    assert response.json["code"] == "invalid_payload"


def test_content_type_the_source_does_not_take_is_415(client):
    body = b'{"id":"e","type":"t"}'
    response = post(
        client,
        "integration",
        body,
        {"X-Integration-Signature": hex_hmac(body), "Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"


def test_form_body_for_a_json_only_source_is_415(client):
    body = b"payload=%7B%7D"
    response = post(
        client,
        "integration",
        body,
        {
            "X-Integration-Signature": hex_hmac(body),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 415


def test_body_without_id_falls_back_to_its_sha256(client):
    body = b'{"type":"message.sent","data":{"id":"m"}}'
    response = post(
        client, "integration", body, {"X-Integration-Signature": hex_hmac(body)}
    )
    assert response.json["id"] == "sha256:" + hashlib.sha256(body).hexdigest()


def test_body_without_id_falls_back_to_a_delivery_header(client):
    body = b'{"type":"message.sent"}'
    response = post(
        client,
        "integration",
        body,
        {"X-Integration-Signature": hex_hmac(body), "X-Delivery-Id": "dlv_77"},
    )
    assert response.json["id"] == "dlv_77"


def test_store_failure_answers_503_so_the_provider_retries(
    client, gateway, monkeypatch
):
    from gateway.errors import StoreError

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise StoreError("disk full")

    monkeypatch.setattr(gateway.store, "insert_event", broken)
    body = example("message.sent.json")
    response = post(
        client, "integration", body, {"X-Integration-Signature": hex_hmac(body)}
    )
    assert response.status_code == 503
    assert response.json["code"] == "unavailable"
    assert "Retry-After" in response.headers


def test_unexpected_bug_gives_json_500_without_traceback(client, gateway, monkeypatch):
    def bug(*args: Any, **kwargs: Any) -> bool:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(gateway.store, "insert_event", bug)
    body = example("message.sent.json")
    response = post(
        client, "integration", body, {"X-Integration-Signature": hex_hmac(body)}
    )
    assert response.status_code == 500
    assert response.json["code"] == "internal_error"
    assert "ZeroDivisionError" not in response.get_data(as_text=True)


def test_stored_headers_leave_out_the_signature(client, gateway):
    body = example("message.sent.json")
    post(client, "integration", body, {"X-Integration-Signature": hex_hmac(body)})
    stored = gateway.store.list_events()[0]
    assert "x-integration-signature" not in stored.event.headers
    assert stored.event.headers["content-type"] == "application/json"


def test_every_answer_carries_a_request_id(client):
    response = client.get("/healthz", headers={"X-Request-Id": "req-123"})
    assert response.headers["X-Request-Id"] == "req-123"


# -- the schemes, end to end --------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scheme", "file", "extra", "event_type"),
    [
        ("integration", "hmac-sha256", "message.read.json", {}, "message.read"),
        (
            "github",
            "github",
            "github.issues.opened.json",
            {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1"},
            "issues.opened",
        ),
        ("stripe", "stripe", "stripe.invoice.paid.json", {}, "invoice.paid"),
        (
            "standard",
            "standard",
            "standard.appointment.booked.json",
            {},
            "appointment.booked",
        ),
        ("slack", "slack", "slack.event_callback.json", {}, "app_mention"),
        (
            "shopify",
            "shopify",
            "shopify.orders.create.json",
            {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": "sh-1"},
            "orders/create",
        ),
    ],
)
def test_each_scheme_accepts_its_signed_example(
    client, gateway, sign, source, scheme, file, extra, event_type
):
    body = example(file)
    headers = {**sign(scheme, body, message_id="msg_example_1"), **extra}
    response = post(client, source, body, headers)
    assert response.status_code == 202, response.json
    stored = gateway.store.list_events()[0]
    assert stored.event.type == event_type


@pytest.mark.parametrize(
    ("source", "scheme"),
    [
        ("integration", "hmac-sha256"),
        ("github", "github"),
        ("stripe", "stripe"),
        ("standard", "standard"),
        ("slack", "slack"),
        ("shopify", "shopify"),
    ],
)
def test_each_scheme_refuses_a_tampered_body(client, gateway, sign, source, scheme):
    body = b'{"id":"evt_t","type":"x.y","event_id":"E1","event":{"type":"x"}}'
    headers = sign(scheme, body, message_id="msg_t")
    tampered = body.replace(b"x.y", b"x.z")
    response = post(client, source, tampered, {**headers, "X-GitHub-Event": "push"})
    assert response.status_code == 401
    assert response.json["code"] == "invalid_signature"
    assert stored_count(gateway) == 0


def test_stale_timestamp_is_refused(client, sign, clock):
    body = example("stripe.invoice.paid.json")
    headers = sign("stripe", body, now=clock.now - 301)
    response = post(client, "stripe", body, headers)
    assert response.status_code == 401
    assert response.json["code"] == "timestamp_out_of_tolerance"


def test_future_timestamp_is_refused(client, sign, clock):
    body = example("slack.event_callback.json")
    headers = sign("slack", body, now=clock.now + 301)
    response = post(client, "slack", body, headers)
    assert response.json["code"] == "timestamp_out_of_tolerance"


def test_rotated_secrets_both_verify(make_app):
    app = make_app(INTEGRATION_SECRET_KEY="old-secret-1,new-secret-2")
    client = app.test_client()
    for index, secret in enumerate(("old-secret-1", "new-secret-2")):
        body = json.dumps({"id": f"e{index}", "type": "t"}).encode()
        response = post(
            client,
            "integration",
            body,
            {"X-Integration-Signature": hex_hmac(body, secret)},
        )
        assert response.status_code == 202


# -- field cases ----------------------------------------------------------------


def test_case1_github_form_delivery_verifies_over_raw_bytes(client, gateway, sign):
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "11111111-1111-1111-1111-111111111111",
        "X-Hub-Signature-256": CASE1_SIGNATURE,
    }
    response = post(client, "github", CASE1_BODY, headers)
    assert response.status_code == 202
    stored = gateway.store.list_events()[0]
    assert stored.event.id == "11111111-1111-1111-1111-111111111111"
    assert stored.event.payload["zen"] == "Keep it simple."
    tampered = CASE1_BODY[:-1] + b"E"
    assert post(client, "github", tampered, headers).status_code == 401
    decoded = (
        b'{"zen":"Keep it simple.","hook_id":1,"repository":{"full_name":"octo/demo"}}'
    )
    json_headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "11111111-1111-1111-1111-111111111112",
        **sign("github", decoded),
    }
    assert post(client, "github", decoded, json_headers).status_code == 202


def test_case1_ping_reaches_handlers_without_error(client, gateway, connect):
    calls: list[Any] = []
    connect("ping", recorder(calls), source="github")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "11111111-1111-1111-1111-111111111111",
        "X-Hub-Signature-256": CASE1_SIGNATURE,
    }
    post(client, "github", CASE1_BODY, headers)
    gateway.dispatcher.run_until_idle()
    assert [event.type for _, event in calls] == ["ping"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8",
        "Application/JSON",
    ],
)
def test_case2_raw_bytes_are_verified_not_a_reserialisation(
    client, gateway, connect, content_type
):
    calls: list[Any] = []
    connect("order.paid", recorder(calls))
    response = post(
        client,
        "integration",
        CASE2_BODY,
        {"X-Integration-Signature": CASE2_SIGNATURE, "Content-Type": content_type},
    )
    assert response.status_code == 202
    gateway.dispatcher.run_until_idle()
    assert calls[0][1].data["note"] == "café é /x"


@pytest.mark.parametrize(
    "signature",
    ["abc123", "z" * 64, "é" + "a" * 63, "sha256=" + "0" * 64, "0" * 63, "0" * 66],
)
def test_case3_malformed_signature_is_401_never_500(
    client, gateway, connect, signature
):
    calls: list[Any] = []
    connect("*", recorder(calls))
    body = b'{"id":"evt_2001","type":"ping"}'
    response = client.post(
        "/api/webhooks/integration",
        data=body,
        headers=[
            ("Content-Type", "application/json"),
            ("X-Integration-Signature", signature),
        ],
    )
    assert response.status_code == 401
    assert response.json["code"] == "invalid_signature"
    gateway.dispatcher.run_until_idle()
    assert stored_count(gateway) == 0
    assert calls == []


@pytest.mark.parametrize(
    ("source", "headers"),
    [
        ("github", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "2222"}),
        ("github", {"X-GitHub-Event": "push", "X-Hub-Signature-256": ""}),
        ("github", {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256="}),
        ("stripe", {}),
        ("standard", {"webhook-id": "msg_1", "webhook-timestamp": "1767225600"}),
        ("slack", {"X-Slack-Request-Timestamp": "1767225600"}),
        ("shopify", {"X-Shopify-Topic": "orders/create"}),
        ("integration", {}),
        ("integration", {"X-Integration-Signature": ""}),
    ],
)
def test_case4_missing_signature_is_401_never_500(client, gateway, source, headers):
    response = post(client, source, PUSH_BODY, headers)
    assert response.status_code == 401
    assert response.json["code"] == "missing_signature"
    assert stored_count(gateway) == 0


def test_case5_standard_secret_is_base64_decoded(make_app, clock, connect):
    app = make_app(ALL_SOURCES_TOML)
    calls: list[Any] = []
    connect("invoice.paid", recorder(calls))
    body = b'{"type":"invoice.paid","data":{"id":"inv_1"}}'
    headers = {
        "webhook-id": "msg_test_0001",
        "webhook-timestamp": "1767225600",
        "webhook-signature": "v1,mickhIPX9dTt36QhFeik8PedRW3SemrkMJPnsORRHt0=",
    }
    client = app.test_client()
    response = post(client, "standard", body, headers)
    assert response.status_code == 202
    assert response.json["id"] == "msg_test_0001"
    app.extensions["gateway"].dispatcher.run_until_idle()
    assert len(calls) == 1
    literal_key = {
        **headers,
        "webhook-id": "msg_test_0002",
        "webhook-signature": "v1,lPb/jSisrkiaYZlFsR+STOFxm1X73b1DyS3hZs9clRo=",
    }
    assert post(client, "standard", body, literal_key).status_code == 401


@pytest.mark.parametrize("secret", ["whsec_!!!!", "whsec_c2hvcnQ="])
def test_case5_bad_standard_secret_stops_start_up(make_app, secret):
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sources\.standard"):
        make_app(f'[sources.standard]\nscheme = "standard"\nsecrets = ["{secret}"]\n')


def test_case6_slack_url_verification_echoes_the_challenge(client, gateway, connect):
    calls: list[Any] = []
    connect("*", recorder(calls))
    headers = {
        "X-Slack-Request-Timestamp": "1767225600",
        "X-Slack-Signature": SLACK_CHALLENGE_SIGNATURE,
    }
    response = post(client, "slack", SLACK_CHALLENGE_BODY, headers)
    assert response.status_code == 200
    assert response.json == {"challenge": "chal_7f2b9e4a_test"}
    gateway.dispatcher.run_until_idle()
    assert stored_count(gateway) == 0
    assert calls == []


def test_case6_unsigned_challenge_is_refused(client):
    headers = {"X-Slack-Request-Timestamp": "1767225600", "X-Slack-Signature": "v0=00"}
    response = post(client, "slack", SLACK_CHALLENGE_BODY, headers)
    assert response.status_code == 401
    assert "chal_7f2b9e4a_test" not in response.get_data(as_text=True)


def test_case7_limit_is_per_client_behind_a_trusted_proxy(make_app):
    app = make_app(GATEWAY_TRUSTED_PROXIES="1", RATELIMIT_DEFAULT="5 per minute")
    client = app.test_client()
    gateway = app.extensions["gateway"]

    def send(event_id: str, forwarded_for: str) -> Any:
        body = json.dumps({"id": event_id, "type": "ping"}).encode()
        return post(
            client,
            "integration",
            body,
            {
                "X-Integration-Signature": hex_hmac(body),
                "X-Forwarded-For": forwarded_for,
            },
        )

    answers = [send(f"evt_rl_{n}", "198.51.100.10").status_code for n in range(1, 7)]
    assert answers == [202] * 5 + [429]
    limited = send("evt_rl_7", "198.51.100.10")
    assert limited.json["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    assert send("evt_rl_other", "198.51.100.20").status_code == 202
    assert stored_count(gateway) == 6


def test_case7_untrusted_forwarded_for_cannot_escape_the_limit(make_app):
    app = make_app(RATELIMIT_DEFAULT="3 per minute")
    client = app.test_client()
    answers = []
    for n in range(5):
        body = json.dumps({"id": f"e{n}", "type": "ping"}).encode()
        answers.append(
            post(
                client,
                "integration",
                body,
                {
                    "X-Integration-Signature": hex_hmac(body),
                    "X-Forwarded-For": f"203.0.113.{n}",
                },
            ).status_code
        )
    assert answers == [202, 202, 202, 429, 429]


class PushRecorder:
    def __init__(self, calls: list[str]):
        self.calls = calls

    def on_push(self, source: str, event: Any) -> None:
        self.calls.append(f"method:{event.id}")


def test_case8_receivers_are_held_strongly(client, gateway, connect):
    calls: list[str] = []

    def record(source: str, event: Any, sink: str) -> None:
        calls.append(f"{sink}:{event.id}")

    connect("push", functools.partial(record, sink="audit"))
    connect("push", lambda source, event: calls.append(f"lambda:{event.id}"))
    connect("push", PushRecorder(calls).on_push)
    gc.collect()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "33333333-3333-3333-3333-333333333333",
        "X-Hub-Signature-256": PUSH_SIGNATURE,
    }
    assert post(client, "github", PUSH_BODY, headers).status_code == 202
    gateway.dispatcher.run_until_idle()
    event_id = "33333333-3333-3333-3333-333333333333"
    assert sorted(calls) == sorted(
        [f"audit:{event_id}", f"lambda:{event_id}", f"method:{event_id}"]
    )


def test_case9_failing_receiver_does_not_stop_the_others(client, gateway, connect):
    calls: list[str] = []

    def h_bad(source: str, event: Any) -> None:
        raise RuntimeError("boom")

    def h_good(source: str, event: Any) -> None:
        calls.append(event.id)

    connect("push", h_bad)
    connect("push", h_good)
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "44444444-4444-4444-4444-444444444444",
        "X-Hub-Signature-256": PUSH_SIGNATURE,
    }
    first = post(client, "github", PUSH_BODY, headers)
    gateway.dispatcher.run_until_idle()
    second = post(client, "github", PUSH_BODY, headers)
    gateway.dispatcher.run_until_idle()
    assert first.status_code == 202
    assert second.status_code == 200
    assert calls == ["44444444-4444-4444-4444-444444444444"]
    stored = gateway.store.list_events()[0]
    runs = gateway.store.handler_runs(stored.pk)
    bad = next(run for name, run in runs.items() if name.endswith("h_bad"))
    assert bad.status == "retrying"
    assert "boom" in (bad.last_error or "")
    assert "RuntimeError" not in second.get_data(as_text=True)
