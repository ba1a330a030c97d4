"""The bad-input catalogue: each hostile or odd input and its answer.

Every entry must give a JSON contract error (or 2xx where the delivery is
valid) and never a 500. Inputs the test client cannot produce (a lying
Content-Length, chunked framing, header limits) go through a real
gunicorn over raw sockets. Decisions taken here are documented in
docs/security.md.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.events import MAX_NESTING_DEPTH
from gateway.schemes import get_scheme
from tests.conftest import ALL_SOURCES_TOML, SECRET
from tests.servers import GatewayServer

LIMIT_BYTES = 1024
SOURCES_TOML = (
    ALL_SOURCES_TOML
    + f"""
[sources.small]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]
max_body_bytes = {LIMIT_BYTES}
"""
)
SCHEME_OF_SOURCE = {
    "integration": "hmac-sha256",
    "small": "hmac-sha256",
    "github": "github",
    "stripe": "stripe",
    "standard": "standard",
    "slack": "slack",
    "shopify": "shopify",
}
BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def event_body(event_id: str, **fields: Any) -> bytes:
    return json.dumps({"id": event_id, "type": "ping", **fields}).encode()


def padded_body(event_id: str, size: int) -> bytes:
    """A valid event body of exactly ``size`` bytes."""
    bare = event_body(event_id, pad="")
    body = event_body(event_id, pad="x" * (size - len(bare)))
    assert len(body) == size
    return body


@pytest.fixture
def catalogue_app(make_app: Callable[..., Any]) -> Any:
    return make_app(SOURCES_TOML, RATELIMIT_DEFAULT="100000 per minute")


@pytest.fixture
def deliver(
    catalogue_app: Any, sign: Callable[..., dict[str, str]]
) -> Callable[..., Any]:
    """Post a body to a source, signed correctly unless told otherwise."""
    client = catalogue_app.test_client()

    def post(
        body: bytes,
        source: str = "integration",
        headers: dict[str, str] | None = None,
        content_type: str | None = "application/json",
        is_signed: bool = True,
    ) -> Any:
        merged: dict[str, str] = {}
        if content_type is not None:
            merged["Content-Type"] = content_type
        if is_signed:
            merged.update(sign(SCHEME_OF_SOURCE[source], body))
        merged.update(headers or {})
        response = client.post(f"/api/webhooks/{source}", data=body, headers=merged)
        assert response.status_code != 500
        assert response.is_json
        return response

    return post


def stored(app: Any, event_id: str) -> Any:
    return app.extensions["gateway"].store.find_event(event_id)


def stored_total(app: Any) -> int:
    return sum(app.extensions["gateway"].store.counts_by_status().values())


# -- bodies ----------------------------------------------------------------------


def test_non_utf8_body_is_refused_as_invalid_payload(deliver, catalogue_app):
    response = deliver(b'{"id":"bad_utf8","type":"\xff\xfe"}')
    assert (response.status_code, response.json["code"]) == (400, "invalid_payload")
    assert stored_total(catalogue_app) == 0


def test_raw_nul_byte_in_body_is_refused_as_invalid_payload(deliver):
    response = deliver(b'{"id":"raw_nul","type":"pi\x00ng"}')
    assert (response.status_code, response.json["code"]) == (400, "invalid_payload")


def test_escaped_nul_in_a_string_is_accepted_and_kept(deliver, catalogue_app):
    response = deliver(b'{"id":"escaped_nul","type":"ping","note":"a\\u0000b"}')
    assert response.status_code == 202
    assert stored(catalogue_app, "escaped_nul").event.payload["note"] == "a\x00b"


def test_lone_surrogate_escape_is_refused_as_invalid_payload(deliver, catalogue_app):
    response = deliver(b'{"id":"surrogate","type":"ping","note":"\\ud800"}')
    assert (response.status_code, response.json["code"]) == (400, "invalid_payload")
    assert stored_total(catalogue_app) == 0


def test_surrogate_pair_escape_is_accepted(deliver, catalogue_app):
    response = deliver(b'{"id":"pair","type":"ping","note":"\\ud83d\\ude00"}')
    assert response.status_code == 202
    assert stored(catalogue_app, "pair").event.payload["note"] == "\U0001f600"


def test_empty_signed_body_is_refused_as_invalid_payload(deliver):
    response = deliver(b"")
    assert (response.status_code, response.json["code"]) == (400, "invalid_payload")


def test_empty_unsigned_body_is_refused_as_missing_signature(deliver):
    response = deliver(b"", is_signed=False)
    assert (response.status_code, response.json["code"]) == (401, "missing_signature")


def test_body_of_exactly_the_limit_is_accepted(deliver):
    response = deliver(padded_body("at_limit", LIMIT_BYTES), source="small")
    assert response.status_code == 202


def test_body_one_byte_over_the_limit_is_refused(deliver, catalogue_app):
    response = deliver(padded_body("over_limit", LIMIT_BYTES + 1), source="small")
    assert (response.status_code, response.json["code"]) == (413, "payload_too_large")
    assert stored_total(catalogue_app) == 0


def test_body_over_the_limit_is_refused_before_its_signature(deliver):
    body = padded_body("over_unsigned", LIMIT_BYTES + 1)
    response = deliver(body, source="small", is_signed=False)
    assert (response.status_code, response.json["code"]) == (413, "payload_too_large")


@pytest.mark.parametrize(
    ("opening", "closing"), [(b"[", b"]"), (b'{"a":', b"}")], ids=["array", "object"]
)
def test_json_nested_ten_thousand_deep_is_refused(deliver, opening, closing):
    body = b'{"id":"deep","type":"ping","data":' + opening * 10_000
    body += b"1" if opening == b'{"a":' else b""
    body += closing * 10_000 + b"}"
    response = deliver(body)
    assert (response.status_code, response.json["code"]) == (400, "invalid_payload")


def test_json_nested_to_the_depth_limit_is_accepted(deliver):
    nested = "[" * (MAX_NESTING_DEPTH - 1) + "]" * (MAX_NESTING_DEPTH - 1)
    body = ('{"id":"at_depth","type":"ping","data":' + nested + "}").encode()
    assert deliver(body).status_code == 202


def test_json_nested_one_past_the_depth_limit_is_refused(deliver):
    nested = "[" * MAX_NESTING_DEPTH + "]" * MAX_NESTING_DEPTH
    body = ('{"id":"past_depth","type":"ping","data":' + nested + "}").encode()
    response = deliver(body)
    assert (response.status_code, response.json["code"]) == (400, "invalid_payload")


@pytest.mark.parametrize(
    "number",
    [
        b"1" + b"0" * 5000,
        b"-" + b"9" * 5000,
        b"1e400",
        b"-1e400",
        b"1" + b"0" * 400 + b".0",
    ],
    ids=["10**5000", "minus-5000-digits", "1e400", "minus-1e400", "401-digit-float"],
)
def test_number_too_large_to_hold_is_refused(deliver, catalogue_app, number):
    response = deliver(b'{"id":"huge","type":"ping","amount":' + number + b"}")
    assert (response.status_code, response.json["code"]) == (400, "invalid_payload")
    assert stored_total(catalogue_app) == 0


def test_duplicate_keys_take_the_last_value(deliver, catalogue_app):
    response = deliver(b'{"id":"dup_keys","type":"first","type":"last"}')
    assert response.status_code == 202
    assert stored(catalogue_app, "dup_keys").event.type == "last"


def test_utf8_bom_before_the_json_is_accepted(deliver):
    response = deliver(b"\xef\xbb\xbf" + event_body("with_bom"))
    assert response.status_code == 202


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8",
        "Application/JSON",
        "application/json; charset=latin-1",
        "application/json; boundary=x; charset=utf-8",
        "application/vnd.provider+json",
        None,
    ],
)
def test_json_media_type_parameters_do_not_matter(deliver, content_type):
    body = event_body(f"charset_{content_type}")
    assert deliver(body, content_type=content_type).status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", "%%"])
def test_other_media_type_is_refused_as_unsupported(deliver, content_type):
    response = deliver(event_body("other_type"), content_type=content_type)
    assert (response.status_code, response.json["code"]) == (
        415,
        "unsupported_media_type",
    )


# -- gzip: refused, not inflated (docs/security.md) --------------------------------


@pytest.mark.parametrize(
    "encoding", ["gzip", "GZIP", "deflate", "br", "gzip, identity"]
)
def test_compressed_body_is_refused_as_unsupported(deliver, catalogue_app, encoding):
    compressed = gzip.compress(event_body("gzipped"))
    response = deliver(compressed, headers={"Content-Encoding": encoding})
    assert (response.status_code, response.json["code"]) == (
        415,
        "unsupported_media_type",
    )
    assert stored_total(catalogue_app) == 0


def test_compressed_body_is_checked_for_its_signature_first(deliver):
    compressed = gzip.compress(event_body("gzipped_unsigned"))
    response = deliver(
        compressed, headers={"Content-Encoding": "gzip"}, is_signed=False
    )
    assert (response.status_code, response.json["code"]) == (401, "missing_signature")


def test_identity_content_encoding_is_accepted(deliver):
    response = deliver(event_body("identity"), headers={"Content-Encoding": "identity"})
    assert response.status_code == 202


# -- headers ---------------------------------------------------------------------


def test_thousands_of_headers_are_accepted_by_the_app(deliver):
    extra = {f"X-Extra-{number}": "value" for number in range(5000)}
    assert deliver(event_body("many_headers"), headers=extra).status_code == 202


def test_64_kb_header_is_accepted_by_the_app(deliver):
    extra = {"X-Padding": "a" * 65536}
    assert deliver(event_body("big_header"), headers=extra).status_code == 202


def test_64_kb_signature_header_is_refused(deliver):
    response = deliver(
        event_body("big_signature"),
        headers={"X-Integration-Signature": "a" * 65536},
        is_signed=False,
    )
    assert (response.status_code, response.json["code"]) == (401, "invalid_signature")


def test_non_ascii_signature_header_is_refused(deliver):
    response = deliver(
        event_body("latin1_signature"),
        headers={"X-Integration-Signature": "é" * 64},
        is_signed=False,
    )
    assert (response.status_code, response.json["code"]) == (401, "invalid_signature")


def test_many_signatures_with_the_valid_one_first_are_accepted(deliver, sign):
    body = event_body("many_first")
    valid = sign("stripe", body)["Stripe-Signature"]
    header = valid + ",v1=" + ",v1=".join(["ab" * 32] * 10_000)
    response = deliver(
        body, source="stripe", headers={"Stripe-Signature": header}, is_signed=False
    )
    assert response.status_code == 202


def test_valid_signature_after_thousands_of_others_is_not_tried(deliver, sign):
    body = event_body("many_last")
    timestamp, valid = sign("stripe", body)["Stripe-Signature"].split(",")
    header = ",".join([timestamp, *["v1=" + "ab" * 32] * 10_000, valid])
    response = deliver(
        body, source="stripe", headers={"Stripe-Signature": header}, is_signed=False
    )
    assert (response.status_code, response.json["code"]) == (401, "invalid_signature")


def test_standard_header_with_thousands_of_entries_is_refused(deliver, sign):
    body = event_body("many_standard")
    headers = sign("standard", body, message_id="msg_many")
    headers["webhook-signature"] = " ".join(["v1," + "A" * 43 + "="] * 10_000)
    response = deliver(body, source="standard", headers=headers, is_signed=False)
    assert (response.status_code, response.json["code"]) == (401, "invalid_signature")


@pytest.mark.parametrize("source", ["shopify", "standard"])
def test_non_canonical_base64_spelling_of_a_valid_signature_is_refused(
    deliver, sign, source
):
    body = event_body(f"malleable_{source}")
    headers = sign(SCHEME_OF_SOURCE[source], body, message_id="msg_malleable")
    name = "X-Shopify-Hmac-Sha256" if source == "shopify" else "webhook-signature"
    value = headers[name]
    # The character before '=' carries two unused low bits: flipping one
    # spells the same 32 bytes differently.
    index = len(value) - 2
    flipped = BASE64_ALPHABET[BASE64_ALPHABET.index(value[index]) ^ 1]
    respelled = value[:index] + flipped + value[index + 1 :]
    assert base64.b64decode(respelled.split(",")[-1]) == base64.b64decode(
        value.split(",")[-1]
    )
    headers[name] = respelled
    response = deliver(body, source=source, headers=headers, is_signed=False)
    assert (response.status_code, response.json["code"]) == (401, "invalid_signature")


TIMESTAMP_HEADERS = {
    "stripe": None,
    "slack": "X-Slack-Request-Timestamp",
    "standard": "webhook-timestamp",
}


def with_timestamp(source: str, headers: dict[str, str], text: str) -> dict[str, str]:
    changed = dict(headers)
    name = TIMESTAMP_HEADERS[source]
    if name is None:
        _, signatures = changed["Stripe-Signature"].split(",", 1)
        changed["Stripe-Signature"] = f"t={text},{signatures}"
    else:
        changed[name] = text
    return changed


@pytest.mark.parametrize("source", sorted(TIMESTAMP_HEADERS))
@pytest.mark.parametrize(
    "text",
    ["abc", "1.7e9", "+1767225600", "-1767225600", "١٧٦٧٢٢٥٦٠٠", "0x69", "1767225600s"],
)
def test_non_numeric_timestamp_is_refused_as_invalid_signature(
    deliver, sign, source, text
):
    body = event_body("bad_timestamp")
    headers = with_timestamp(source, sign(SCHEME_OF_SOURCE[source], body), text)
    response = deliver(body, source=source, headers=headers, is_signed=False)
    assert (response.status_code, response.json["code"]) == (401, "invalid_signature")


@pytest.mark.parametrize("source", sorted(TIMESTAMP_HEADERS))
@pytest.mark.parametrize(
    "text", ["9" * 40, "99999999999999999", "9" * 5000, "0", "0" * 30 + "1767225600"]
)
def test_overflowing_timestamp_is_refused_as_out_of_tolerance(
    deliver, sign, source, text
):
    body = event_body("overflowing_timestamp")
    headers = with_timestamp(source, sign(SCHEME_OF_SOURCE[source], body), text)
    response = deliver(body, source=source, headers=headers, is_signed=False)
    assert (response.status_code, response.json["code"]) == (
        401,
        "timestamp_out_of_tolerance",
    )


# -- through a real gunicorn, over raw sockets --------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """One gunicorn worker serving every scheme and the small source."""
    root: Path = tmp_path_factory.mktemp("bad-input")
    config_path = root / "sources.toml"
    config_path.write_text(SOURCES_TOML)
    env = {
        "GATEWAY_CONFIG": str(config_path),
        "RATELIMIT_DEFAULT": "100000 per minute",
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    with GatewayServer(root, workers=1, env=env, args=["--timeout", "10"]) as running:
        yield running


def exchange(
    server: GatewayServer, raw: bytes, *, half_close: bool = False
) -> tuple[int, str, bytes]:
    """Send raw bytes; return the first answer's status, type and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return (
            response.status,
            response.getheader("Content-Type", ""),
            response.read(),
        )


def request_head(source: str, body: bytes, framing: bytes, extra: bytes = b"") -> bytes:
    """A request line and headers signing ``body`` for ``source``."""
    signature = get_scheme("hmac-sha256").sign(body, SECRET, now=0)
    lines = [
        f"POST /api/webhooks/{source} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"X-Integration-Signature: " + signature["X-Integration-Signature"].encode(),
        framing,
    ]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def chunked(body: bytes, size: int = 100) -> bytes:
    pieces = [body[start : start + size] for start in range(0, len(body), size)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return framed + b"0\r\n\r\n"


def json_answer(answer: tuple[int, str, bytes]) -> tuple[int, str]:
    status, content_type, body = answer
    assert status != 500
    assert content_type == "application/json"
    return status, json.loads(body).get("code", "accepted")


@pytest.mark.server
def test_content_length_shorter_than_the_body_is_refused(server):
    body = event_body("short_length")
    raw = request_head("integration", body, b"Content-Length: %d" % (len(body) - 5))
    answer = exchange(server, raw + body)
    assert json_answer(answer) == (401, "invalid_signature")


@pytest.mark.server
def test_content_length_longer_than_the_body_is_refused(server):
    body = event_body("long_length")
    raw = request_head("integration", body, b"Content-Length: %d" % (len(body) + 10))
    answer = exchange(server, raw + body, half_close=True)
    assert json_answer(answer) == (400, "invalid_payload")


@pytest.mark.server
def test_content_length_over_the_limit_is_refused_without_the_body(server):
    raw = request_head("small", b"", b"Content-Length: %d" % (LIMIT_BYTES + 1))
    assert json_answer(exchange(server, raw)) == (413, "payload_too_large")


@pytest.mark.server
def test_absurd_content_length_is_refused_without_the_body(server):
    raw = request_head("integration", b"", b"Content-Length: " + b"9" * 40)
    assert json_answer(exchange(server, raw)) == (413, "payload_too_large")


@pytest.mark.server
def test_chunked_body_without_length_is_accepted(server):
    body = padded_body("chunked_ok", 900)
    raw = request_head("small", body, b"Transfer-Encoding: chunked") + chunked(body)
    assert json_answer(exchange(server, raw)) == (202, "accepted")


@pytest.mark.server
def test_chunked_body_over_the_limit_is_refused(server):
    body = padded_body("chunked_big", LIMIT_BYTES + 1)
    raw = request_head("small", body, b"Transfer-Encoding: chunked") + chunked(body)
    assert json_answer(exchange(server, raw)) == (413, "payload_too_large")


@pytest.mark.server
def test_malformed_chunk_is_refused_as_invalid_payload(server):
    body = event_body("bad_chunk")
    raw = request_head("integration", body, b"Transfer-Encoding: chunked")
    assert json_answer(exchange(server, raw + b"zz\r\nabc\r\n0\r\n\r\n")) == (
        400,
        "invalid_payload",
    )


@pytest.mark.server
def test_latin1_bytes_in_a_header_reach_the_app_and_are_refused(server):
    body = event_body("latin1_header")
    raw = request_head("integration", body, b"Content-Length: %d" % len(body)).replace(
        b"X-Integration-Signature: ", b"X-Integration-Signature: \xe9\xff"
    )
    assert json_answer(exchange(server, raw + body)) == (401, "invalid_signature")


# Each: the framing line and extra header lines of a request gunicorn
# refuses itself.
GUNICORN_REFUSALS = {
    "thousands-of-headers": (
        b"Content-Length: %d",
        b"".join(b"X-H%d: v\r\n" % n for n in range(3000)),
    ),
    "64-kb-header": (b"Content-Length: %d", b"X-Big: " + b"a" * 65536 + b"\r\n"),
    "nul-in-header": (b"Content-Length: %d", b"X-Nul: a\x00b\r\n"),
    "length-and-chunked": (b"Content-Length: %d", b"Transfer-Encoding: chunked\r\n"),
    "negative-length": (b"Content-Length: -1", b""),
}


@pytest.mark.server
@pytest.mark.parametrize("case", sorted(GUNICORN_REFUSALS))
def test_gunicorn_refuses_malformed_or_oversized_headers_before_the_app(server, case):
    body = event_body(f"gunicorn_{case}")
    framing, extra = GUNICORN_REFUSALS[case]
    if b"%d" in framing:
        framing = framing % len(body)
    status, content_type, _ = exchange(
        server, request_head("integration", body, framing, extra) + body
    )
    # Answered by gunicorn in HTML, not by the gateway (README Limitations).
    assert status in (400, 431)
    assert content_type.startswith("text/html")
    assert server.request("GET", "/healthz")[0] == 200


# -- logs ------------------------------------------------------------------------


def test_hostile_delivery_leaves_no_signature_or_body_in_the_logs(
    deliver, sign, caplog
):
    body = event_body("log_probe", card="4111-1111-1111-1111")
    signature = sign("hmac-sha256", body)["X-Integration-Signature"]
    forged = signature[::-1]
    with caplog.at_level("DEBUG", logger="gateway"):
        deliver(body, headers={"X-Integration-Signature": forged}, is_signed=False)
        deliver(body + b"\xff", headers={"X-Integration-Signature": signature})
        deliver(body)
    logged = "\n".join(
        f"{record.getMessage()} {vars(record)}" for record in caplog.records
    )
    assert "delivery" in logged
    for secret_text in (signature, forged, SECRET, "4111-1111-1111-1111"):
        assert secret_text not in logged
