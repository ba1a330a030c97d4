"""Parsing and event id and type extraction, per scheme (CONTRACT.md section 2)."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import InvalidPayload, UnsupportedMediaType
from gateway.events import make_event, parse_delivery

JSON = "application/json"


def test_body_id_and_type_name_the_event_for_body_schemes():
    for scheme in ("hmac-sha256", "stripe", "standard"):
        parsed = parse_delivery(
            scheme, b'{"id":"evt_9","type":"invoice.paid"}', JSON, {}
        )
        assert (parsed.event_id, parsed.event_type) == ("evt_9", "invoice.paid")


def test_github_type_joins_event_header_and_action():
    parsed = parse_delivery(
        "github",
        b'{"action":"opened","issue":{}}',
        JSON,
        {"x-github-event": "issues", "x-github-delivery": "abc-1"},
    )
    assert (parsed.event_id, parsed.event_type) == ("abc-1", "issues.opened")


def test_github_event_without_action_is_the_header_alone():
    parsed = parse_delivery(
        "github",
        b'{"zen":"z"}',
        JSON,
        {"x-github-event": "ping", "x-github-delivery": "d"},
    )
    assert parsed.event_type == "ping"


def test_slack_uses_event_id_and_inner_event_type():
    body = b'{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}'
    parsed = parse_delivery("slack", body, JSON, {})
    assert (parsed.event_id, parsed.event_type) == ("Ev1", "app_mention")


def test_slack_url_verification_carries_the_challenge():
    body = b'{"type":"url_verification","challenge":"c-1"}'
    assert parse_delivery("slack", body, JSON, {}).challenge == "c-1"


def test_shopify_uses_its_webhook_id_and_topic_headers():
    parsed = parse_delivery(
        "shopify",
        b'{"id":820982911946154508}',
        JSON,
        {"x-shopify-webhook-id": "wh-1", "x-shopify-topic": "orders/create"},
    )
    assert (parsed.event_id, parsed.event_type) == ("wh-1", "orders/create")


def test_id_falls_back_to_delivery_header_then_body_hash():
    body = b'{"type":"t"}'
    with_header = parse_delivery("standard", body, JSON, {"webhook-id": "msg_1"})
    without = parse_delivery("hmac-sha256", body, JSON, {})
    assert with_header.event_id == "msg_1"
    assert without.event_id == "sha256:" + hashlib.sha256(body).hexdigest()


def test_numeric_body_id_is_used_as_text():
    parsed = parse_delivery("hmac-sha256", b'{"id":42,"type":"t"}', JSON, {})
    assert parsed.event_id == "42"


@pytest.mark.parametrize("content_type", [None, "", "application/cloudevents+json"])
def test_missing_or_json_suffix_content_type_is_parsed_as_json(content_type):
    assert parse_delivery("hmac-sha256", b'{"type":"t"}', content_type, {}).payload


def test_form_encoded_github_payload_is_decoded():
    body = b"payload=%7B%22action%22%3A%22closed%22%7D"
    parsed = parse_delivery(
        "github",
        body,
        "application/x-www-form-urlencoded",
        {"x-github-event": "issues", "x-github-delivery": "d"},
    )
    assert parsed.event_type == "issues.closed"


def test_form_without_payload_field_is_invalid():
    with pytest.raises(InvalidPayload):
        parse_delivery(
            "github",
            b"other=1",
            "application/x-www-form-urlencoded",
            {"x-github-event": "push"},
        )


def test_xml_is_an_unsupported_media_type():
    with pytest.raises(UnsupportedMediaType):
        parse_delivery("hmac-sha256", b"<a/>", "application/xml", {})


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"t","a":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"type":"t","a":' + b"[" * 200 + b"]" * 200 + b"}",
        b'{"type":"t","n":' + b"9" * 5000 + b"}",
        b'{"type":"t","x":Infinity}',
        b'{"type": 7}',
        b'{"type": ""}',
        b'{"type": "' + b"a" * 300 + b'"}',
    ],
)
def test_hostile_json_is_invalid_payload(body):
    with pytest.raises(InvalidPayload):
        parse_delivery("hmac-sha256", body, JSON, {})


def test_deep_but_reasonable_nesting_is_accepted():
    body = b'{"type":"t","d":' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}"
    assert parse_delivery("hmac-sha256", body, JSON, {}).event_type == "t"


def test_utf8_bom_is_accepted():
    body = b'\xef\xbb\xbf{"type":"t"}'
    assert parse_delivery("hmac-sha256", body, JSON, {}).event_type == "t"


def test_stored_event_headers_drop_signatures_and_credentials():
    parsed = parse_delivery("github", b'{"a":1}', JSON, {"x-github-event": "push"})
    event = make_event(
        source="github",
        delivery=parsed,
        received_at=1767225600.0,
        headers={
            "x-github-event": "push",
            "x-hub-signature-256": "sha256=00",
            "authorization": "Bearer x",
            "cookie": "a=b",
        },
        signature_headers=("x-hub-signature-256",),
    )
    assert dict(event.headers) == {"x-github-event": "push"}
    assert event.data is None
    assert event.received_at.year == 2026
