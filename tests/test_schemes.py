"""Tests of the signature schemes in ``gateway.schemes``.

Every expected signature below was computed with openssl, independently of
the code under test; the command is noted next to each constant and
``tests/known_answers.md`` explains the method. Bodies are written to a
file with ``printf '%s' '<body>' > body.bin`` (exact bytes, no newline).
"""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import (
    ConfigError,
    InvalidSignature,
    MissingSignature,
    TimestampOutOfTolerance,
)
from gateway.schemes import (
    MAX_SIGNATURE_ENTRIES,
    SCHEME_NAMES,
    Scheme,
    SigningKey,
    Verification,
    get_scheme,
)

NOW = 1767225600  # 2026-01-01T00:00:00Z, the field cases' frozen clock
TOLERANCE_SECONDS = 300

# Field case 2: 108 bytes with a literal é, an escaped \u00e9 and \/.
CASE_2_BODY = (
    '{"id": "evt_1001", "type": "order.paid", "data": {"amount": 1000, '
    '"note": "café \\u00e9 \\/x", "ratio": 1.0}}'
).encode()
# openssl dgst -sha256 -hmac testsecret -r case2.bin
CASE_2_HEX = "d360a210e266be5023e45f7b70139b7c1bc3d27f165a0f9e2816ae7407849745"

PING_BODY = b'{"id":"evt_2001","type":"ping"}'  # field case 3's body
# openssl dgst -sha256 -hmac testsecret -r ping.bin
PING_HEX = "a0a98c1bd2809f535e9e0e94e5d26053051a14347326d2a24f818fa4a8501200"
# openssl dgst -sha256 -hmac testsecret -binary ping.bin | openssl base64 -A
PING_BASE64 = "oKmMG9KAn1Neng6U5dJgUwUaFDRzJtKiT4GPpKhQEgA="

CASE_1_BODY = (
    b"payload=%7B%22zen%22%3A%22Keep%20it%20simple.%22%2C%22hook_id%22%3A1%2C"
    b"%22repository%22%3A%7B%22full_name%22%3A%22octo%2Fdemo%22%7D%7D"
)
# openssl dgst -sha256 -hmac testsecret -r case1.bin
CASE_1_HEX = "a5243e9172c849c1c646446a6eff001fdd0fb5534d93acfbed72132400aeebad"
CASE_8_BODY = b'{"ref":"refs/heads/main","repository":{"full_name":"octo/demo"}}'
# openssl dgst -sha256 -hmac testsecret -r case8.bin
CASE_8_HEX = "6d76107dbe03ed4ed1a06ce5345340d9a6477c8415bc34523f5c72a66d6d682b"

STRIPE_SECRET = "whsec_stripe_test_secret"
# printf '%s' '1767225600.{"id":"evt_2001","type":"ping"}' > stripe.bin
# openssl dgst -sha256 -hmac whsec_stripe_test_secret -r stripe.bin
STRIPE_HEX = "9788697c065842f44ab6262299a4eb1e49f2d66500ee6b93a8379f508dd3e91c"

CASE_5_BODY = b'{"type":"invoice.paid","data":{"id":"inv_1"}}'
CASE_5_KEY_BASE64 = "dGVzdHNlY3JldC1zdGFuZGFyZC13ZWJob29rcy1rZXk="
STANDARD_SECRET = "whsec_" + CASE_5_KEY_BASE64
# printf '%s' 'msg_test_0001.1767225600.<body>' > case5.bin
# openssl dgst -sha256 -mac HMAC \
#   -macopt key:testsecret-standard-webhooks-key -binary case5.bin \
#   | openssl base64 -A
CASE_5_V1 = "mickhIPX9dTt36QhFeik8PedRW3SemrkMJPnsORRHt0="
# The same keyed with the literal 'whsec_...' text (the field case's bug):
# openssl dgst -sha256 -hmac 'whsec_dGVz...' -binary case5.bin | openssl base64 -A
CASE_5_LITERAL_KEY_V1 = "lPb/jSisrkiaYZlFsR+STOFxm1X73b1DyS3hZs9clRo="

# Ed25519 seed and public key of RFC 8032 section 7.1, test 1. openssl
# derived the same public key from the seed wrapped in PKCS#8 DER:
# printf '302e020100300506032b657004220420<seed hex>' | xxd -r -p > sk.der
# openssl pkey -inform DER -in sk.der -out sk.pem
# openssl pkey -in sk.pem -pubout -outform DER | tail -c 32 | openssl base64 -A
ED25519_SIGNING_SECRET = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
ED25519_PUBLIC_SECRET = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
# openssl pkeyutl -sign -rawin -inkey sk.pem -in case5.bin | openssl base64 -A
CASE_5_V1A = (
    "g5dks+fj6GQJ3ZMTH8s99sFkxy2Grf5FWMEwPGg6Kfqzg/SBUMRHC0YQhIocrbDCgpNJkr3ZKLt2"
    "K2XiEiRfCQ=="
)

CASE_6_BODY = (
    b'{"token":"tok_test_placeholder","challenge":"chal_7f2b9e4a_test",'
    b'"type":"url_verification"}'
)
# printf '%s' 'v0:1767225600:<body>' > case6.bin
# openssl dgst -sha256 -hmac testsecret -r case6.bin
CASE_6_HEX = "00e1f8da06d10e8d2188640daf688ae51e40b7e4d61d006020544668bdd6ceb9"

SECRETS = {
    "hmac-sha256": "testsecret",
    "github": "testsecret",
    "stripe": STRIPE_SECRET,
    "standard": STANDARD_SECRET,
    "slack": "testsecret",
    "shopify": "testsecret",
}

# Each scheme's known answer: body and the headers a real sender sends.
KNOWN_ANSWERS: dict[str, tuple[bytes, dict[str, str]]] = {
    "hmac-sha256": (CASE_2_BODY, {"X-Integration-Signature": CASE_2_HEX}),
    "github": (CASE_8_BODY, {"X-Hub-Signature-256": "sha256=" + CASE_8_HEX}),
    "stripe": (PING_BODY, {"Stripe-Signature": f"t={NOW},v1={STRIPE_HEX}"}),
    "standard": (
        CASE_5_BODY,
        {
            "webhook-id": "msg_test_0001",
            "webhook-timestamp": str(NOW),
            "webhook-signature": "v1," + CASE_5_V1,
        },
    ),
    "slack": (
        CASE_6_BODY,
        {
            "X-Slack-Request-Timestamp": str(NOW),
            "X-Slack-Signature": "v0=" + CASE_6_HEX,
        },
    ),
    "shopify": (PING_BODY, {"X-Shopify-Hmac-Sha256": PING_BASE64}),
}


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def key(
    scheme: Scheme, secret: str, key_id: str = "#0", **options: float
) -> SigningKey:
    return scheme.load_key(secret, key_id, **options)


def verify(
    scheme_name: str,
    body: bytes,
    headers: Mapping[str, str],
    secrets: list[str] | None = None,
    now: float = NOW,
) -> Verification:
    scheme = get_scheme(scheme_name)
    keys = [
        key(scheme, secret, f"#{position}")
        for position, secret in enumerate(secrets or [SECRETS[scheme_name]])
    ]
    return scheme.verify(
        body, lower(headers), keys, now=now, tolerance_seconds=TOLERANCE_SECONDS
    )


def signature_header(scheme_name: str) -> str:
    return get_scheme(scheme_name).signature_headers[0]


# Known answers -----------------------------------------------------------


@pytest.mark.parametrize("scheme_name", SCHEME_NAMES)
def test_known_answer_is_accepted(scheme_name: str) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    verification = verify(scheme_name, body, headers)
    assert verification.key_id == "#0"


@pytest.mark.parametrize("scheme_name", SCHEME_NAMES)
def test_sign_reproduces_the_known_answer(scheme_name: str) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    signed = get_scheme(scheme_name).sign(
        body, SECRETS[scheme_name], now=NOW, message_id="msg_test_0001"
    )
    assert signed == headers


@pytest.mark.parametrize("scheme_name", ["stripe", "standard", "slack"])
def test_timestamped_scheme_returns_the_signed_timestamp(scheme_name: str) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    assert verify(scheme_name, body, headers).timestamp == NOW


@pytest.mark.parametrize("scheme_name", ["hmac-sha256", "github", "shopify"])
def test_untimestamped_scheme_returns_no_timestamp(scheme_name: str) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    assert verify(scheme_name, body, headers).timestamp is None


def test_integration_field_case_3_body_has_its_known_answer() -> None:
    verification = verify(
        "hmac-sha256", PING_BODY, {"X-Integration-Signature": PING_HEX}
    )
    assert verification.key_id == "#0"


def test_reserialised_body_is_refused() -> None:
    reserialised = json.dumps(json.loads(CASE_2_BODY)).encode()
    assert reserialised != CASE_2_BODY
    with pytest.raises(InvalidSignature):
        verify("hmac-sha256", reserialised, {"X-Integration-Signature": CASE_2_HEX})


def test_github_form_encoded_field_case_1_is_accepted() -> None:
    headers = {"X-Hub-Signature-256": "sha256=" + CASE_1_HEX}
    assert verify("github", CASE_1_BODY, headers).key_id == "#0"


def test_standard_secret_used_literally_is_refused() -> None:
    body, headers = KNOWN_ANSWERS["standard"]
    twin = {**headers, "webhook-signature": "v1," + CASE_5_LITERAL_KEY_V1}
    with pytest.raises(InvalidSignature):
        verify("standard", body, twin)


def test_standard_secret_without_prefix_is_decoded_as_base64() -> None:
    body, headers = KNOWN_ANSWERS["standard"]
    assert verify("standard", body, headers, [CASE_5_KEY_BASE64]).key_id == "#0"


def test_standard_secret_without_padding_is_accepted() -> None:
    body, headers = KNOWN_ANSWERS["standard"]
    unpadded = STANDARD_SECRET.rstrip("=")
    assert verify("standard", body, headers, [unpadded]).key_id == "#0"


def test_standard_key_material_is_the_decoded_secret() -> None:
    loaded = key(get_scheme("standard"), STANDARD_SECRET)
    assert loaded.material == b"testsecret-standard-webhooks-key"


def test_stripe_secret_is_used_as_literal_text() -> None:
    loaded = key(get_scheme("stripe"), STRIPE_SECRET)
    assert loaded.material == STRIPE_SECRET.encode()


def test_svix_header_names_are_accepted() -> None:
    body, headers = KNOWN_ANSWERS["standard"]
    svix = {name.replace("webhook-", "svix-"): value for name, value in headers.items()}
    assert verify("standard", body, svix).timestamp == NOW


# Ed25519 (v1a) -------------------------------------------------------------


def v1a_headers(signature: str = CASE_5_V1A) -> dict[str, str]:
    _, headers = KNOWN_ANSWERS["standard"]
    return {**headers, "webhook-signature": "v1a," + signature}


def test_v1a_known_answer_is_accepted_with_the_public_key() -> None:
    verification = verify(
        "standard", CASE_5_BODY, v1a_headers(), [ED25519_PUBLIC_SECRET]
    )
    assert verification.key_id == "#0"


def test_v1a_public_key_loads_as_ed25519() -> None:
    loaded = key(get_scheme("standard"), ED25519_PUBLIC_SECRET)
    assert loaded.kind == "ed25519"
    assert loaded.material.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )


def test_v1a_sign_reproduces_the_known_answer() -> None:
    signed = get_scheme("standard").sign(
        CASE_5_BODY, ED25519_SIGNING_SECRET, now=NOW, message_id="msg_test_0001"
    )
    assert signed == v1a_headers()


def test_v1a_signature_over_another_body_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        verify("standard", CASE_5_BODY + b" ", v1a_headers(), [ED25519_PUBLIC_SECRET])


def test_v1a_signature_by_another_key_is_refused() -> None:
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    other_secret = "whpk_" + base64.b64encode(other).decode()
    with pytest.raises(InvalidSignature):
        verify("standard", CASE_5_BODY, v1a_headers(), [other_secret])


def test_v1a_entry_is_not_checked_against_hmac_secrets() -> None:
    with pytest.raises(InvalidSignature):
        verify("standard", CASE_5_BODY, v1a_headers())


def test_v1_entry_is_not_checked_against_ed25519_keys() -> None:
    body, headers = KNOWN_ANSWERS["standard"]
    with pytest.raises(InvalidSignature):
        verify("standard", body, headers, [ED25519_PUBLIC_SECRET])


def test_mixed_v1_and_v1a_entries_match_either_kind_of_key() -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    both = {**headers, "webhook-signature": f"v1,{'A' * 43}= v1a,{CASE_5_V1A}"}
    verification = verify(
        "standard", CASE_5_BODY, both, [STANDARD_SECRET, ED25519_PUBLIC_SECRET]
    )
    assert verification.key_id == "#1"


def test_v1a_sign_accepts_a_64_byte_seed_and_public_key() -> None:
    seed = base64.b64decode(ED25519_SIGNING_SECRET[5:])
    public = base64.b64decode(ED25519_PUBLIC_SECRET[5:])
    secret = "whsk_" + base64.b64encode(seed + public).decode()
    signed = get_scheme("standard").sign(
        CASE_5_BODY, secret, now=NOW, message_id="msg_test_0001"
    )
    assert signed == v1a_headers()


def test_v1a_sign_refuses_a_mismatched_public_half() -> None:
    seed = base64.b64decode(ED25519_SIGNING_SECRET[5:])
    secret = "whsk_" + base64.b64encode(seed + bytes(32)).decode()
    with pytest.raises(ConfigError):
        get_scheme("standard").sign(CASE_5_BODY, secret, now=NOW)


def test_public_key_cannot_sign() -> None:
    with pytest.raises(ConfigError):
        get_scheme("standard").sign(CASE_5_BODY, ED25519_PUBLIC_SECRET, now=NOW)


def test_signing_key_is_refused_as_a_verification_secret() -> None:
    with pytest.raises(ConfigError, match="whpk_"):
        key(get_scheme("standard"), ED25519_SIGNING_SECRET)


def test_public_key_of_wrong_length_is_refused() -> None:
    with pytest.raises(ConfigError):
        key(get_scheme("standard"), "whpk_" + base64.b64encode(bytes(31)).decode())


# Accepted variants -------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme_name", "body", "headers"),
    [
        ("hmac-sha256", PING_BODY, {"X-Integration-Signature": PING_HEX.upper()}),
        (
            "github",
            CASE_8_BODY,
            {"X-Hub-Signature-256": "sha256=" + CASE_8_HEX.upper()},
        ),
        ("stripe", PING_BODY, {"Stripe-Signature": f"t={NOW},v1={STRIPE_HEX.upper()}"}),
        (
            "slack",
            CASE_6_BODY,
            {
                "X-Slack-Request-Timestamp": str(NOW),
                "X-Slack-Signature": "v0=" + CASE_6_HEX.upper(),
            },
        ),
    ],
)
def test_upper_case_hex_is_accepted(
    scheme_name: str, body: bytes, headers: dict[str, str]
) -> None:
    assert verify(scheme_name, body, headers).key_id == "#0"


def test_integration_signature_with_sha256_prefix_is_accepted() -> None:
    headers = {"X-Integration-Signature": "sha256=" + PING_HEX}
    assert verify("hmac-sha256", PING_BODY, headers).key_id == "#0"


def test_integration_header_name_is_configurable() -> None:
    scheme = get_scheme("hmac-sha256", header="X-Acme-Signature")
    assert scheme.signature_headers == ("x-acme-signature",)
    verification = scheme.verify(
        PING_BODY,
        {"x-acme-signature": PING_HEX},
        [key(scheme, "testsecret")],
        now=NOW,
        tolerance_seconds=TOLERANCE_SECONDS,
    )
    assert verification.key_id == "#0"


def test_configured_header_name_is_used_when_signing() -> None:
    scheme = get_scheme("hmac-sha256", header="X-Acme-Signature")
    assert scheme.sign(PING_BODY, "testsecret", now=NOW) == {
        "X-Acme-Signature": PING_HEX
    }


def test_stripe_v0_entries_are_ignored_and_any_v1_may_match() -> None:
    value = f"t={NOW},v0={'0' * 64},v1={'1' * 64},v1={STRIPE_HEX}"
    verification = verify("stripe", PING_BODY, {"Stripe-Signature": value})
    assert verification.key_id == "#0"


def test_standard_header_with_several_entries_matches_any() -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    value = f"v1,{CASE_5_LITERAL_KEY_V1} v2,whatever v1,{CASE_5_V1}"
    verification = verify(
        "standard", CASE_5_BODY, {**headers, "webhook-signature": value}
    )
    assert verification.key_id == "#0"


def test_signature_entry_within_the_cap_is_tried() -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    entries = [f"v1,{CASE_5_LITERAL_KEY_V1}"] * (MAX_SIGNATURE_ENTRIES - 1)
    value = " ".join([*entries, f"v1,{CASE_5_V1}"])
    verification = verify(
        "standard", CASE_5_BODY, {**headers, "webhook-signature": value}
    )
    assert verification.key_id == "#0"


def test_signature_entries_beyond_the_cap_are_not_tried() -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    entries = [f"v1,{CASE_5_LITERAL_KEY_V1}"] * 5000
    value = " ".join([*entries, f"v1,{CASE_5_V1}"])
    with pytest.raises(InvalidSignature):
        verify("standard", CASE_5_BODY, {**headers, "webhook-signature": value})


def test_stripe_v1_entries_beyond_the_cap_are_not_tried() -> None:
    entries = ",".join([f"v1={'1' * 64}"] * MAX_SIGNATURE_ENTRIES)
    value = f"t={NOW},{entries},v1={STRIPE_HEX}"
    with pytest.raises(InvalidSignature):
        verify("stripe", PING_BODY, {"Stripe-Signature": value})


# Malformed signatures ----------------------------------------------------

MALFORMED_HEX = [
    "abc123",  # field case 3: too short
    "z" * 64,  # field case 3: 64 characters, not hex
    "é" + "a" * 63,  # field case 3: non-ASCII
    "Ã©" + "a" * 62,  # UTF-8 é as WSGI passes it, decoded as latin-1
    PING_HEX + "00",  # too long
    PING_HEX[:-1],  # odd length
    " ".join([PING_HEX[:32], PING_HEX[32:]]),  # space inside
    "٠" * 64,  # non-ASCII digits
    "0x" + PING_HEX[2:],
]


@pytest.mark.parametrize("signature", MALFORMED_HEX)
def test_malformed_integration_signature_is_refused(signature: str) -> None:
    with pytest.raises(InvalidSignature) as refusal:
        verify("hmac-sha256", PING_BODY, {"X-Integration-Signature": signature})
    assert signature not in refusal.value.detail
    assert signature not in str(refusal.value)


@pytest.mark.parametrize("signature", MALFORMED_HEX)
def test_malformed_github_signature_is_refused(signature: str) -> None:
    headers = {"X-Hub-Signature-256": "sha256=" + signature}
    with pytest.raises(InvalidSignature):
        verify("github", PING_BODY, headers)


@pytest.mark.parametrize("signature", MALFORMED_HEX)
def test_malformed_stripe_signature_is_refused(signature: str) -> None:
    headers = {"Stripe-Signature": f"t={NOW},v1={signature}"}
    with pytest.raises(InvalidSignature):
        verify("stripe", PING_BODY, headers)


@pytest.mark.parametrize("signature", MALFORMED_HEX)
def test_malformed_slack_signature_is_refused(signature: str) -> None:
    headers = {
        "X-Slack-Request-Timestamp": str(NOW),
        "X-Slack-Signature": "v0=" + signature,
    }
    with pytest.raises(InvalidSignature):
        verify("slack", CASE_6_BODY, headers)


MALFORMED_BASE64 = [
    "!!!!" + PING_BASE64[4:],  # outside the alphabet
    PING_BASE64.rstrip("="),  # padding missing
    PING_BASE64[:-4],  # wrong length
    base64.b64encode(bytes(33)).decode(),  # decodes to 33 bytes
    "é" + PING_BASE64[1:],  # non-ASCII
    PING_BASE64[:20] + "\n" + PING_BASE64[20:],  # embedded newline
]


@pytest.mark.parametrize("signature", MALFORMED_BASE64)
def test_malformed_shopify_signature_is_refused(signature: str) -> None:
    with pytest.raises(InvalidSignature):
        verify("shopify", PING_BODY, {"X-Shopify-Hmac-Sha256": signature})


@pytest.mark.parametrize("signature", MALFORMED_BASE64)
def test_malformed_standard_signature_is_refused(signature: str) -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    malformed = {**headers, "webhook-signature": "v1," + signature}
    with pytest.raises(InvalidSignature, match="malformed"):
        verify("standard", CASE_5_BODY, malformed)


@pytest.mark.parametrize(
    "value", ["v2,abcd", "v1", "v1a", "garbage", "v1=" + CASE_5_V1]
)
def test_standard_header_without_a_usable_entry_is_refused(value: str) -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    with pytest.raises(InvalidSignature):
        verify("standard", CASE_5_BODY, {**headers, "webhook-signature": value})


def test_standard_header_without_v1_entry_says_so_in_the_detail() -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    with pytest.raises(InvalidSignature) as refusal:
        verify("standard", CASE_5_BODY, {**headers, "webhook-signature": "v2,abcd"})
    assert refusal.value.detail == "header webhook-signature has no v1 or v1a entry"


@pytest.mark.parametrize("message_id", ["msg test", "msg_é", "msg\x00"])
def test_standard_message_id_that_is_not_printable_ascii_is_refused(
    message_id: str,
) -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    with pytest.raises(InvalidSignature):
        verify("standard", CASE_5_BODY, {**headers, "webhook-id": message_id})


def test_github_signature_without_prefix_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        verify("github", CASE_8_BODY, {"X-Hub-Signature-256": CASE_8_HEX})


def test_slack_signature_without_version_prefix_is_refused() -> None:
    headers = {"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": CASE_6_HEX}
    with pytest.raises(InvalidSignature):
        verify("slack", CASE_6_BODY, headers)


@pytest.mark.parametrize(
    "value",
    [
        f"v1={STRIPE_HEX}",  # no timestamp
        f"t={NOW}",  # no signature
        f"t={NOW},v0={STRIPE_HEX}",  # only another scheme
        f"t={NOW},t={NOW},v1={STRIPE_HEX}",  # two timestamps
        ",,,",
    ],
)
def test_malformed_stripe_header_is_refused(value: str) -> None:
    with pytest.raises(InvalidSignature):
        verify("stripe", PING_BODY, {"Stripe-Signature": value})


# Missing signatures ------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme_name", "header"),
    [
        ("hmac-sha256", "X-Integration-Signature"),
        ("github", "X-Hub-Signature-256"),
        ("stripe", "Stripe-Signature"),
        ("standard", "webhook-id"),
        ("standard", "webhook-timestamp"),
        ("standard", "webhook-signature"),
        ("slack", "X-Slack-Signature"),
        ("slack", "X-Slack-Request-Timestamp"),
        ("shopify", "X-Shopify-Hmac-Sha256"),
    ],
)
@pytest.mark.parametrize("replacement", [None, "", "   "])
def test_missing_or_empty_signature_header_is_refused_as_missing(
    scheme_name: str, header: str, replacement: str | None
) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    headers = {name: value for name, value in headers.items() if name != header}
    if replacement is not None:
        headers[header] = replacement
    with pytest.raises(MissingSignature) as refusal:
        verify(scheme_name, body, headers)
    assert header.lower() in refusal.value.detail


@pytest.mark.parametrize(
    ("scheme_name", "headers"),
    [
        ("hmac-sha256", {"X-Integration-Signature": "sha256="}),
        ("github", {"X-Hub-Signature-256": "sha256="}),
        ("slack", {"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": "v0="}),
    ],
)
def test_prefix_with_nothing_after_it_is_refused_as_missing(
    scheme_name: str, headers: dict[str, str]
) -> None:
    with pytest.raises(MissingSignature):
        verify(scheme_name, PING_BODY, headers)


def test_no_headers_at_all_is_refused_as_missing_for_every_scheme() -> None:
    for scheme_name in SCHEME_NAMES:
        with pytest.raises(MissingSignature):
            verify(scheme_name, PING_BODY, {})


# Timestamps --------------------------------------------------------------


@pytest.mark.parametrize("scheme_name", ["stripe", "standard", "slack"])
def test_stale_timestamp_is_refused(scheme_name: str) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    with pytest.raises(TimestampOutOfTolerance) as refusal:
        verify(scheme_name, body, headers, now=NOW + TOLERANCE_SECONDS + 1)
    assert refusal.value.detail == (
        "timestamp skew 301 s exceeds 300 s (behind the gateway clock)"
    )


@pytest.mark.parametrize("scheme_name", ["stripe", "standard", "slack"])
def test_future_timestamp_is_refused(scheme_name: str) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    with pytest.raises(TimestampOutOfTolerance) as refusal:
        verify(scheme_name, body, headers, now=NOW - TOLERANCE_SECONDS - 1)
    assert "ahead of" in refusal.value.detail


@pytest.mark.parametrize("scheme_name", ["stripe", "standard", "slack"])
@pytest.mark.parametrize("offset", [-TOLERANCE_SECONDS, TOLERANCE_SECONDS])
def test_timestamp_at_the_tolerance_edge_is_accepted(
    scheme_name: str, offset: int
) -> None:
    body, headers = KNOWN_ANSWERS[scheme_name]
    assert verify(scheme_name, body, headers, now=NOW + offset).timestamp == NOW


def test_untimestamped_scheme_ignores_the_clock() -> None:
    body, headers = KNOWN_ANSWERS["github"]
    assert verify("github", body, headers, now=0).key_id == "#0"


def test_tolerance_is_checked_before_the_signature() -> None:
    headers = {"Stripe-Signature": f"t={NOW - 10_000},v1={'0' * 64}"}
    with pytest.raises(TimestampOutOfTolerance):
        verify("stripe", PING_BODY, headers)


@pytest.mark.parametrize(
    "timestamp", ["now", "1767225600.5", "-1767225600", "+1767225600", "1_767_225_600"]
)
def test_non_numeric_timestamp_is_refused_as_malformed(timestamp: str) -> None:
    _, headers = KNOWN_ANSWERS["standard"]
    with pytest.raises(InvalidSignature):
        verify("standard", CASE_5_BODY, {**headers, "webhook-timestamp": timestamp})


@pytest.mark.parametrize("timestamp", ["١٧٦٧٢٢٥٦٠٠", "１７６７２２５６００"])
def test_non_ascii_digits_in_timestamp_are_refused_as_malformed(
    timestamp: str,
) -> None:
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + CASE_6_HEX,
    }
    with pytest.raises(InvalidSignature):
        verify("slack", CASE_6_BODY, headers)


@pytest.mark.parametrize("timestamp", ["9" * 19, "9" * 5000, "0"])
def test_absurd_numeric_timestamp_is_out_of_tolerance(timestamp: str) -> None:
    headers = {"Stripe-Signature": f"t={timestamp},v1={STRIPE_HEX}"}
    with pytest.raises(TimestampOutOfTolerance):
        verify("stripe", PING_BODY, headers)


# Rotation and expiry -----------------------------------------------------


def test_any_of_several_secrets_matches_and_is_named() -> None:
    body, headers = KNOWN_ANSWERS["github"]
    verification = verify("github", body, headers, ["oldsecret", "testsecret"])
    assert verification == Verification("#1", None)


def test_standard_rotation_returns_the_matching_key_id() -> None:
    other = "whsec_" + base64.b64encode(b"another-standard-webhooks-key!!").decode()
    body, headers = KNOWN_ANSWERS["standard"]
    assert verify("standard", body, headers, [other, STANDARD_SECRET]).key_id == "#1"


def test_no_match_among_several_secrets_counts_them_in_the_detail() -> None:
    body, headers = KNOWN_ANSWERS["github"]
    with pytest.raises(InvalidSignature) as refusal:
        verify("github", body, headers, ["one", "two"])
    assert refusal.value.detail == "no configured secret matched (2 tried)"


def test_expired_key_is_skipped() -> None:
    scheme = get_scheme("github")
    body, headers = KNOWN_ANSWERS["github"]
    expired = key(scheme, "testsecret", "old", not_after=NOW - 1)
    with pytest.raises(InvalidSignature) as refusal:
        scheme.verify(body, lower(headers), [expired], now=NOW, tolerance_seconds=300)
    assert "1 expired" in refusal.value.detail


def test_current_key_matches_when_another_has_expired() -> None:
    scheme = get_scheme("github")
    body, headers = KNOWN_ANSWERS["github"]
    keys = [
        key(scheme, "testsecret", "old", not_after=NOW - 1),
        key(scheme, "testsecret", "new", not_after=NOW + 86_400),
    ]
    verification = scheme.verify(
        body, lower(headers), keys, now=NOW, tolerance_seconds=300
    )
    assert verification.key_id == "new"


def test_key_is_usable_until_its_not_after_second() -> None:
    scheme = get_scheme("github")
    body, headers = KNOWN_ANSWERS["github"]
    keys = [key(scheme, "testsecret", "edge", not_after=NOW)]
    verification = scheme.verify(
        body, lower(headers), keys, now=NOW, tolerance_seconds=300
    )
    assert verification.key_id == "edge"


def test_no_keys_at_all_is_refused() -> None:
    body, headers = KNOWN_ANSWERS["shopify"]
    with pytest.raises(InvalidSignature):
        get_scheme("shopify").verify(
            body, lower(headers), [], now=NOW, tolerance_seconds=300
        )


def test_ed25519_key_is_not_usable_by_an_hmac_scheme() -> None:
    body, headers = KNOWN_ANSWERS["github"]
    ed25519_key = key(get_scheme("standard"), ED25519_PUBLIC_SECRET)
    with pytest.raises(InvalidSignature):
        get_scheme("github").verify(
            body, lower(headers), [ed25519_key], now=NOW, tolerance_seconds=300
        )


# Configuration -----------------------------------------------------------


@pytest.mark.parametrize("scheme_name", SCHEME_NAMES)
@pytest.mark.parametrize("secret", ["", "   "])
def test_empty_secret_is_a_config_error(scheme_name: str, secret: str) -> None:
    with pytest.raises(ConfigError, match="empty"):
        key(get_scheme(scheme_name), secret, "primary")


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_!!!!",
        "whsec_",
        "whsec_" + base64.b64encode(b"short key").decode(),  # 9 bytes
        "whsec_" + base64.b64encode(bytes(15)).decode(),
        "whsec_dGVzdHNlY3JldC1zdGFuZGFyZC13ZWJob29rcy1rZXk=é",
        "testsecret",  # bare text: base64 of too few bytes
        "not base64 at all",
    ],
)
def test_bad_standard_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError) as refusal:
        key(get_scheme("standard"), secret, "primary")
    assert secret not in str(refusal.value)
    assert "'primary'" in str(refusal.value)


def test_standard_secret_of_sixteen_bytes_is_accepted() -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(16))).decode()
    assert len(key(get_scheme("standard"), secret).material) == 16


def test_secret_that_is_not_utf8_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="UTF-8"):
        key(get_scheme("github"), "bad\udcffsecret")


def test_unknown_scheme_is_a_config_error_listing_valid_names() -> None:
    with pytest.raises(ConfigError) as refusal:
        get_scheme("paypal")
    for name in SCHEME_NAMES:
        assert name in str(refusal.value)


@pytest.mark.parametrize("header", ["", "X Signature", "X-Sig:", "X-Signé"])
def test_invalid_header_name_is_a_config_error(header: str) -> None:
    with pytest.raises(ConfigError):
        get_scheme("hmac-sha256", header=header)


@pytest.mark.parametrize("scheme_name", ["stripe", "standard", "slack"])
def test_header_override_is_refused_where_the_scheme_fixes_it(
    scheme_name: str,
) -> None:
    with pytest.raises(ConfigError):
        get_scheme(scheme_name, header="X-Other")


@pytest.mark.parametrize("scheme_name", ["github", "shopify"])
def test_header_override_is_taken_by_github_and_shopify(scheme_name: str) -> None:
    assert get_scheme(scheme_name, header="X-Other").signature_headers == ("x-other",)


def test_signing_key_repr_does_not_show_the_material() -> None:
    loaded = key(get_scheme("github"), "testsecret")
    assert "testsecret" not in repr(loaded)
    assert "material" not in repr(loaded)


# Interface ---------------------------------------------------------------


def test_scheme_names_and_flags_match_the_contract() -> None:
    timestamped = {name: get_scheme(name).timestamped for name in SCHEME_NAMES}
    assert timestamped == {
        "hmac-sha256": False,
        "github": False,
        "stripe": True,
        "standard": True,
        "slack": True,
        "shopify": False,
    }
    assert [get_scheme(name).name for name in SCHEME_NAMES] == list(SCHEME_NAMES)


@pytest.mark.parametrize("scheme_name", SCHEME_NAMES)
def test_signature_headers_are_lower_case_and_cover_the_signed_headers(
    scheme_name: str,
) -> None:
    scheme = get_scheme(scheme_name)
    assert all(name == name.lower() for name in scheme.signature_headers)
    _, headers = KNOWN_ANSWERS[scheme_name]
    signature_names = {name.lower() for name in headers} & {
        "x-integration-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "webhook-signature",
        "x-slack-signature",
        "x-shopify-hmac-sha256",
    }
    assert signature_names <= set(scheme.signature_headers)


def test_schemes_module_does_not_import_flask() -> None:
    source = Path(__file__).parents[1] / "gateway" / "schemes.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"flask", "werkzeug"}


@pytest.mark.parametrize("module", ["schemes_base.py", "schemes_standard.py"])
def test_scheme_support_modules_do_not_import_flask(module: str) -> None:
    source = Path(__file__).parents[1] / "gateway" / module
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "the module's imports were not read"
    assert not imported & {"flask", "werkzeug"}


def test_standard_sign_generates_a_message_id_when_none_is_given() -> None:
    signed = get_scheme("standard").sign(CASE_5_BODY, STANDARD_SECRET, now=NOW)
    assert signed["webhook-id"].startswith("msg_")
    assert verify("standard", CASE_5_BODY, signed).timestamp == NOW


@pytest.mark.parametrize("message_id", ["", "msg one", "msg_é"])
def test_standard_sign_refuses_an_unsendable_message_id(message_id: str) -> None:
    with pytest.raises(ValueError):
        get_scheme("standard").sign(
            CASE_5_BODY, STANDARD_SECRET, now=NOW, message_id=message_id
        )


@pytest.mark.parametrize("scheme_name", SCHEME_NAMES)
def test_sign_refuses_an_empty_secret(scheme_name: str) -> None:
    with pytest.raises(ConfigError):
        get_scheme(scheme_name).sign(PING_BODY, "", now=NOW)


# Properties --------------------------------------------------------------

ROUND_TRIP_SECRETS = [
    *SECRETS.items(),
    ("standard", ED25519_SIGNING_SECRET),
]
VERIFY_SECRETS = {ED25519_SIGNING_SECRET: ED25519_PUBLIC_SECRET}


@pytest.mark.parametrize(("scheme_name", "secret"), ROUND_TRIP_SECRETS)
@settings(max_examples=60, database=None, deadline=None)
@given(body=st.binary(min_size=1, max_size=512), data=st.data())
def test_signed_body_verifies_and_any_changed_byte_fails(
    scheme_name: str, secret: str, body: bytes, data: st.DataObject
) -> None:
    headers = get_scheme(scheme_name).sign(body, secret, now=NOW, message_id="msg_1")
    verification_secret = VERIFY_SECRETS.get(secret, secret)
    assert verify(scheme_name, body, headers, [verification_secret]).key_id == "#0"

    position = data.draw(st.integers(0, len(body) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="flip")
    tampered = bytearray(body)
    tampered[position] ^= flip
    with pytest.raises(InvalidSignature):
        verify(scheme_name, bytes(tampered), headers, [verification_secret])
