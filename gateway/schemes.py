"""Signature schemes: one verifier per way providers sign their webhooks.

Each scheme checks a delivery's signature over the raw body bytes exactly
as received (CONTRACT.md section 2) and can produce the headers a
compliant sender would send. The module is plain Python with no Flask
import, so the web layer, the command-line interface and tests share it.

A source's secrets become :class:`SigningKey` values once, at start-up,
through :meth:`Scheme.load_key`: a bad secret is a ``ConfigError`` then,
never a key that silently accepts or refuses every delivery later.

The shared base class and helpers live in :mod:`gateway.schemes_base`
and the Standard Webhooks scheme in :mod:`gateway.schemes_standard`;
callers import every public name from here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from gateway.errors import ConfigError
from gateway.schemes_base import (
    MAX_SIGNATURE_ENTRIES,
    MAX_TIMESTAMP_DIGITS,
    SHA256_DIGEST_BYTES,
    Claim,
    Scheme,
    SigningKey,
    Verification,
    decode_base64,
    decode_hex_digest,
    malformed_header,
    missing_header,
    parse_timestamp,
    require_header,
)
from gateway.schemes_standard import (
    ED25519_KEY_BYTES,
    ED25519_SIGNATURE_BYTES,
    MIN_STANDARD_KEY_BYTES,
    StandardScheme,
)

__all__ = [
    "ED25519_KEY_BYTES",
    "ED25519_SIGNATURE_BYTES",
    "MAX_SIGNATURE_ENTRIES",
    "MAX_STRIPE_HEADER_ITEMS",
    "MAX_TIMESTAMP_DIGITS",
    "MIN_STANDARD_KEY_BYTES",
    "SCHEME_NAMES",
    "SHA256_DIGEST_BYTES",
    "Scheme",
    "SigningKey",
    "Verification",
    "get_scheme",
]

SCHEME_NAMES: tuple[str, ...] = (
    "hmac-sha256",
    "github",
    "stripe",
    "standard",
    "slack",
    "shopify",
)

# Stripe headers also carry entries of other schemes (v0); the parser looks
# at no more than this many comma-separated items.
MAX_STRIPE_HEADER_ITEMS = 64

_HEADER_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
)


def get_scheme(name: str, header: str | None = None) -> Scheme:
    """Return the scheme called ``name``.

    :param header: overrides the signature header's name; taken by
        ``hmac-sha256`` (default ``X-Integration-Signature``), ``github`` and
        ``shopify``.
    :raises ConfigError: the name is unknown (the message lists the valid
        names), or the header is not a valid name or not taken by the
        scheme.
    """
    if name not in SCHEME_NAMES:
        raise ConfigError(
            f"Unknown signature scheme {name!r}. "
            f"Valid schemes: {', '.join(SCHEME_NAMES)}."
        )
    if header is not None and (not header or not _HEADER_NAME_CHARS.issuperset(header)):
        raise ConfigError(f"The header setting of the {name} scheme is not valid.")
    if name == "hmac-sha256":
        return _HexBodyScheme(name, header or "X-Integration-Signature", "")
    if name == "github":
        return _HexBodyScheme(name, header or "X-Hub-Signature-256", "sha256=")
    if name == "shopify":
        return _ShopifyScheme(header or "X-Shopify-Hmac-Sha256")
    if header is not None:
        raise ConfigError(f"The {name} scheme does not take a header setting.")
    if name == "stripe":
        return _StripeScheme()
    if name == "slack":
        return _SlackScheme()
    return StandardScheme()


class _HexBodyScheme(Scheme):
    """Hex HMAC-SHA256 of the raw body in one header (hmac-sha256, github).

    Upper- and lower-case hex are both accepted. ``hmac-sha256`` takes an
    optional ``sha256=`` prefix; ``github`` requires it.
    """

    def __init__(self, name: str, header: str, prefix: str) -> None:
        self.name = name
        self.signature_headers = (header.lower(),)
        self._header_spelling = header
        self._prefix = prefix

    def sign(
        self, body: bytes, secret: str, *, now: int, message_id: str | None = None
    ) -> dict[str, str]:
        digest = self._hmac(secret, b"", body)
        return {self._header_spelling: self._prefix + digest.hex()}

    def _read(self, headers: Mapping[str, str]) -> Claim:
        header = self.signature_headers[0]
        value = require_header(headers, header)
        if value[:7].lower() == "sha256=":
            value = value[7:]
            if not value:
                raise missing_header(header)
        elif self._prefix:
            raise malformed_header(header, "lacks the sha256= prefix")
        digest = decode_hex_digest(value)
        if digest is None:
            raise malformed_header(header, "is not 64 hexadecimal digits")
        return Claim(b"", [digest])


class _ShopifyScheme(Scheme):
    """Base64 HMAC-SHA256 of the raw body in ``X-Shopify-Hmac-Sha256``."""

    name = "shopify"

    def __init__(self, header: str) -> None:
        self.signature_headers = (header.lower(),)
        self._header_spelling = header

    def sign(
        self, body: bytes, secret: str, *, now: int, message_id: str | None = None
    ) -> dict[str, str]:
        digest = self._hmac(secret, b"", body)
        return {self._header_spelling: base64.b64encode(digest).decode("ascii")}

    def _read(self, headers: Mapping[str, str]) -> Claim:
        header = self.signature_headers[0]
        digest = decode_base64(require_header(headers, header), SHA256_DIGEST_BYTES)
        if digest is None:
            raise malformed_header(header, "is not the base64 of a 32-byte digest")
        return Claim(b"", [digest])


class _StripeScheme(Scheme):
    """``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` over ``t.body``.

    Stripe's ``whsec_`` secret is used as literal UTF-8 text; unlike
    Standard Webhooks it is not base64-decoded. Entries of other schemes
    (``v0``) are ignored.
    """

    name = "stripe"
    signature_headers = ("stripe-signature",)
    timestamped = True

    def sign(
        self, body: bytes, secret: str, *, now: int, message_id: str | None = None
    ) -> dict[str, str]:
        digest = self._hmac(secret, f"{now}.".encode("ascii"), body)
        return {"Stripe-Signature": f"t={now},v1={digest.hex()}"}

    def _read(self, headers: Mapping[str, str]) -> Claim:
        header = self.signature_headers[0]
        value = require_header(headers, header)
        timestamp_text = ""
        entries: list[str] = []
        for item in value.split(",", MAX_STRIPE_HEADER_ITEMS)[:MAX_STRIPE_HEADER_ITEMS]:
            label, _, text = item.strip().partition("=")
            if label == "t" and timestamp_text:
                raise malformed_header(header, "has more than one t= timestamp")
            if label == "t":
                timestamp_text = text
            elif label == "v1":
                entries.append(text)
        if not timestamp_text:
            raise malformed_header(header, "has no t= timestamp")
        timestamp = parse_timestamp(header, timestamp_text)
        if not entries:
            raise malformed_header(header, "has no v1 entry")
        decoded = [decode_hex_digest(text) for text in entries]
        digests = [digest for digest in decoded if digest is not None]
        if not digests:
            raise malformed_header(header, "has no well-formed v1 entry")
        prefix = timestamp_text.encode("ascii") + b"."
        return Claim(prefix, digests[:MAX_SIGNATURE_ENTRIES], timestamp)


class _SlackScheme(Scheme):
    """``X-Slack-Signature: v0=<hex>`` over ``v0:<ts>:<body>``."""

    name = "slack"
    signature_headers = ("x-slack-signature",)
    timestamped = True

    def sign(
        self, body: bytes, secret: str, *, now: int, message_id: str | None = None
    ) -> dict[str, str]:
        digest = self._hmac(secret, f"v0:{now}:".encode("ascii"), body)
        return {
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": "v0=" + digest.hex(),
        }

    def _read(self, headers: Mapping[str, str]) -> Claim:
        header, timestamp_header = "x-slack-signature", "x-slack-request-timestamp"
        value = require_header(headers, header)
        timestamp_text = require_header(headers, timestamp_header)
        if value == "v0=":
            raise missing_header(header)
        if not value.startswith("v0="):
            raise malformed_header(header, "lacks the v0= prefix")
        timestamp = parse_timestamp(timestamp_header, timestamp_text)
        digest = decode_hex_digest(value[3:])
        if digest is None:
            raise malformed_header(header, "is not v0= and 64 hexadecimal digits")
        prefix = b"v0:" + timestamp_text.encode("ascii") + b":"
        return Claim(prefix, [digest], timestamp)
