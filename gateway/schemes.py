"""Signature schemes: one verifier per way providers sign their webhooks.

Each scheme checks a delivery's signature over the raw body bytes exactly
as received (CONTRACT.md section 2) and can produce the headers a
compliant sender would send. The module is plain Python with no Flask
import, so the web layer, the command-line interface and tests share it.

A source's secrets become :class:`SigningKey` values once, at start-up,
through :meth:`Scheme.load_key`: a bad secret is a ``ConfigError`` then,
never a key that silently accepts or refuses every delivery later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature as Ed25519Mismatch
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gateway.errors import (
    ConfigError,
    InvalidSignature,
    MissingSignature,
    TimestampOutOfTolerance,
)

SCHEME_NAMES: tuple[str, ...] = (
    "hmac-sha256",
    "github",
    "stripe",
    "standard",
    "slack",
    "shopify",
)
# A header may list several signatures (the sender rotating its secret).
# Only this many are tried, so a header with thousands of entries costs
# bounded work; later entries are ignored.
MAX_SIGNATURE_ENTRIES = 16
# Stripe headers also carry entries of other schemes (v0); the parser looks
# at no more than this many comma-separated items.
MAX_STRIPE_HEADER_ITEMS = 64
# A shorter Standard Webhooks key is refused at start-up: a short or empty
# HMAC key would make forgeries easy (field case 5).
MIN_STANDARD_KEY_BYTES = 16
# More digits than this cannot be a plausible unix time in seconds; such a
# timestamp is refused as out of tolerance without converting it.
MAX_TIMESTAMP_DIGITS = 18
SHA256_DIGEST_BYTES = 32
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_HEADER_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
)


@dataclass(frozen=True)
class SigningKey:
    """One usable secret of a source, as loaded by :meth:`Scheme.load_key`.

    ``material`` holds the key bytes actually used: the secret's UTF-8 text
    for most schemes, the base64-decoded key for Standard Webhooks, the raw
    32-byte public key when ``kind`` is ``"ed25519"``. It is left out of
    ``repr`` so a logged key never shows it. ``not_after`` is in unix
    seconds; a key past it never matches.
    """

    key_id: str
    material: bytes = field(repr=False)
    not_after: float | None = None
    kind: str = "hmac"


@dataclass(frozen=True)
class Verification:
    """The outcome of an accepted signature.

    ``key_id`` names the key that matched; ``timestamp`` is the signed unix
    time in seconds for timestamped schemes and ``None`` otherwise.
    """

    key_id: str
    timestamp: int | None


@dataclass(frozen=True)
class _Claim:
    """What a delivery's headers assert: the candidate signatures."""

    prefix: bytes  # signed ahead of the body
    digests: list[bytes]  # HMAC-SHA256 candidates
    timestamp: int | None = None
    ed25519_signatures: list[bytes] = field(default_factory=list)


class Scheme(ABC):
    """A way of signing deliveries: header names, signed content, encoding.

    Instances come from :func:`get_scheme`. They hold no secrets and no
    mutable state, so one instance may serve many threads.
    """

    name: str
    signature_headers: tuple[str, ...]
    timestamped: bool = False

    def load_key(
        self, secret: str, key_id: str, not_after: float | None = None
    ) -> SigningKey:
        """Check a configured secret and turn it into a key.

        Unless the scheme says otherwise, the secret's UTF-8 text is the
        HMAC key.

        :raises ConfigError: the secret is empty, blank or not text; the
            message names the key id, never the secret.
        """
        return SigningKey(key_id, _secret_bytes(self.name, secret, key_id), not_after)

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        keys: Sequence[SigningKey],
        *,
        now: float,
        tolerance_seconds: int,
    ) -> Verification:
        """Check a delivery's signature over its raw body.

        ``headers`` maps lower-case header names to their values as WSGI
        gives them. ``now`` is unix seconds; keys whose ``not_after`` is
        before it are skipped, and when any of several keys matches, the
        returned ``key_id`` says which. A timestamped scheme refuses a
        signed time more than ``tolerance_seconds`` from ``now`` in either
        direction. The checks run cheapest first: headers, then timestamp,
        then one HMAC per usable key.

        :raises MissingSignature: a header the scheme needs is absent or
            empty.
        :raises InvalidSignature: a header is malformed, no key is usable
            or no key matches.
        :raises TimestampOutOfTolerance: the signed time is too far from
            ``now``.
        """
        claim = self._read(headers)
        if claim.timestamp is not None:
            _check_tolerance(claim.timestamp, now, tolerance_seconds)
        usable = _usable_keys(keys, now, self._key_kinds())
        matched = _find_hmac_key(claim.prefix, body, claim.digests, usable)
        if matched is None and claim.ed25519_signatures:
            content = claim.prefix + body
            matched = _find_ed25519_key(content, claim.ed25519_signatures, usable)
        if matched is None:
            raise InvalidSignature(
                detail=f"no configured secret matched ({len(usable)} tried)"
            )
        return Verification(matched.key_id, claim.timestamp)

    @abstractmethod
    def sign(
        self, body: bytes, secret: str, *, now: int, message_id: str | None = None
    ) -> dict[str, str]:
        """Return the signing headers a compliant sender would send.

        Only the headers the scheme defines are returned: the signature
        and, where the scheme has them, the timestamp and message id, in
        the provider's usual spelling. ``now`` is the unix time to sign;
        ``message_id`` is used by the ``standard`` scheme only.

        :raises ConfigError: the secret is not valid for this scheme.
        """

    @abstractmethod
    def _read(self, headers: Mapping[str, str]) -> _Claim:
        """Parse the scheme's headers, refusing missing or malformed ones."""

    def _key_kinds(self) -> frozenset[str]:
        return frozenset({"hmac"})

    def _hmac(self, secret: str, prefix: bytes, body: bytes) -> bytes:
        return _hmac_digest(self.load_key(secret, "signing").material, prefix, body)


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
    return _StandardScheme()


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

    def _read(self, headers: Mapping[str, str]) -> _Claim:
        header = self.signature_headers[0]
        value = _require_header(headers, header)
        if value[:7].lower() == "sha256=":
            value = value[7:]
            if not value:
                raise _missing(header)
        elif self._prefix:
            raise _malformed(header, "lacks the sha256= prefix")
        digest = _decode_hex_digest(value)
        if digest is None:
            raise _malformed(header, "is not 64 hexadecimal digits")
        return _Claim(b"", [digest])


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

    def _read(self, headers: Mapping[str, str]) -> _Claim:
        header = self.signature_headers[0]
        digest = _decode_base64(_require_header(headers, header), SHA256_DIGEST_BYTES)
        if digest is None:
            raise _malformed(header, "is not the base64 of a 32-byte digest")
        return _Claim(b"", [digest])


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

    def _read(self, headers: Mapping[str, str]) -> _Claim:
        header = self.signature_headers[0]
        value = _require_header(headers, header)
        timestamp_text = ""
        entries: list[str] = []
        for item in value.split(",", MAX_STRIPE_HEADER_ITEMS)[:MAX_STRIPE_HEADER_ITEMS]:
            label, _, text = item.strip().partition("=")
            if label == "t" and timestamp_text:
                raise _malformed(header, "has more than one t= timestamp")
            if label == "t":
                timestamp_text = text
            elif label == "v1":
                entries.append(text)
        if not timestamp_text:
            raise _malformed(header, "has no t= timestamp")
        timestamp = _parse_timestamp(header, timestamp_text)
        if not entries:
            raise _malformed(header, "has no v1 entry")
        decoded = [_decode_hex_digest(text) for text in entries]
        digests = [digest for digest in decoded if digest is not None]
        if not digests:
            raise _malformed(header, "has no well-formed v1 entry")
        prefix = timestamp_text.encode("ascii") + b"."
        return _Claim(prefix, digests[:MAX_SIGNATURE_ENTRIES], timestamp)


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

    def _read(self, headers: Mapping[str, str]) -> _Claim:
        header, timestamp_header = "x-slack-signature", "x-slack-request-timestamp"
        value = _require_header(headers, header)
        timestamp_text = _require_header(headers, timestamp_header)
        if value == "v0=":
            raise _missing(header)
        if not value.startswith("v0="):
            raise _malformed(header, "lacks the v0= prefix")
        timestamp = _parse_timestamp(timestamp_header, timestamp_text)
        digest = _decode_hex_digest(value[3:])
        if digest is None:
            raise _malformed(header, "is not v0= and 64 hexadecimal digits")
        prefix = b"v0:" + timestamp_text.encode("ascii") + b":"
        return _Claim(prefix, [digest], timestamp)


class _StandardScheme(Scheme):
    """Standard Webhooks (Svix): ``v1`` HMAC and ``v1a`` Ed25519 entries.

    Headers are ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature``, or the same three with ``svix-``: the family
    whose signature header is present is used, ``webhook-`` first. The
    signed content is ``<id>.<timestamp>.<body>``.
    """

    name = "standard"
    signature_headers = ("webhook-signature", "svix-signature")
    timestamped = True

    def load_key(
        self, secret: str, key_id: str, not_after: float | None = None
    ) -> SigningKey:
        """Check a Standard Webhooks secret and decode its key.

        ``whsec_<base64>`` gives an HMAC key of at least 16 bytes; bare
        base64 is taken too, as Svix does, and missing ``=`` padding is
        restored. ``whpk_<base64>`` gives a 32-byte Ed25519 public key that
        verifies ``v1a`` entries. A ``whsk_`` signing key is refused: a
        receiver needs only the public key.

        :raises ConfigError: the secret is empty, not valid base64, of the
            wrong length, or a signing key.
        """
        _secret_bytes(self.name, secret, key_id)
        where = f"Secret {key_id!r} of the standard scheme"
        if secret.startswith("whsk_"):
            raise ConfigError(
                f"{where} is a whsk_ signing key. "
                "Configure the matching whpk_ public key to verify deliveries."
            )
        if secret.startswith("whpk_"):
            public = _decode_config_base64(where, secret[5:], "whpk_")
            if len(public) != ED25519_KEY_BYTES:
                raise ConfigError(
                    f"{where} decodes to {len(public)} bytes. "
                    f"An Ed25519 public key has {ED25519_KEY_BYTES}."
                )
            return SigningKey(key_id, public, not_after, kind="ed25519")
        material = _decode_config_base64(where, secret.removeprefix("whsec_"), "whsec_")
        if len(material) < MIN_STANDARD_KEY_BYTES:
            raise ConfigError(
                f"{where} decodes to {len(material)} bytes. "
                f"At least {MIN_STANDARD_KEY_BYTES} are needed."
            )
        return SigningKey(key_id, material, not_after)

    def sign(
        self, body: bytes, secret: str, *, now: int, message_id: str | None = None
    ) -> dict[str, str]:
        """Return ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.

        A ``whsec_`` (or bare base64) secret gives a ``v1`` HMAC entry. A
        ``whsk_`` secret, the base64 of a 32-byte Ed25519 seed (or of the
        64-byte seed followed by its public key), gives a ``v1a`` entry.
        Without ``message_id`` a random ``msg_`` id is generated.

        :raises ConfigError: the secret cannot sign.
        :raises ValueError: ``message_id`` is empty or holds anything but
            printable ASCII without spaces.
        """
        if message_id is None:
            message_id = "msg_" + secrets.token_hex(12)
        if not _is_message_id(message_id):
            raise ValueError("message_id must be printable ASCII without spaces")
        content = f"{message_id}.{now}.".encode("ascii") + body
        if secret.startswith("whsk_"):
            signature = _load_ed25519_signing_key(secret).sign(content)
            entry = "v1a," + base64.b64encode(signature).decode("ascii")
        else:
            key = self.load_key(secret, "signing")
            if key.kind != "hmac":
                raise ConfigError("A whpk_ public key cannot sign deliveries.")
            digest = _hmac_digest(key.material, b"", content)
            entry = "v1," + base64.b64encode(digest).decode("ascii")
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(now),
            "webhook-signature": entry,
        }

    def _read(self, headers: Mapping[str, str]) -> _Claim:
        # Svix's own names are used only when the standard signature header
        # is absent, so a refusal names the standard header.
        use_svix = not _header(headers, "webhook-signature") and bool(
            _header(headers, "svix-signature")
        )
        family = "svix" if use_svix else "webhook"
        header = f"{family}-signature"
        value = _require_header(headers, header)
        message_id = _require_header(headers, f"{family}-id")
        timestamp_text = _require_header(headers, f"{family}-timestamp")
        if not _is_message_id(message_id):
            raise _malformed(f"{family}-id", "is not printable ASCII without spaces")
        timestamp = _parse_timestamp(f"{family}-timestamp", timestamp_text)
        entries = value.split(None, MAX_SIGNATURE_ENTRIES)[:MAX_SIGNATURE_ENTRIES]
        digests: list[bytes] = []
        signatures: list[bytes] = []
        known = 0
        for entry in entries:
            version, _, text = entry.partition(",")
            if version == "v1":
                known += 1
                _append_decoded(digests, text, SHA256_DIGEST_BYTES)
            elif version == "v1a":
                known += 1
                _append_decoded(signatures, text, ED25519_SIGNATURE_BYTES)
        if not known:
            raise _malformed(header, "has no v1 or v1a entry")
        if not digests and not signatures:
            raise _malformed(header, "has no well-formed v1 or v1a entry")
        prefix = f"{message_id}.{timestamp_text}.".encode("ascii")
        return _Claim(prefix, digests, timestamp, signatures)

    def _key_kinds(self) -> frozenset[str]:
        return frozenset({"hmac", "ed25519"})


def _secret_bytes(scheme: str, secret: str, key_id: str) -> bytes:
    where = f"Secret {key_id!r} of the {scheme} scheme"
    if not secret or secret.isspace():
        raise ConfigError(f"{where} is empty. Set a non-empty secret.")
    try:
        return secret.encode("utf-8")
    except UnicodeEncodeError:
        # Environment values holding invalid UTF-8 arrive as surrogates.
        raise ConfigError(f"{where} is not valid UTF-8 text.") from None


def _decode_config_base64(where: str, text: str, prefix: str) -> bytes:
    # Secrets copied from senders' dashboards sometimes lose their '='
    # padding; restoring it is unambiguous. Anything outside the base64
    # alphabet is refused rather than skipped.
    decoded = _decode_base64(text + "=" * (-len(text) % 4), None)
    if decoded is None:
        raise ConfigError(
            f"{where} is not valid base64 after the {prefix} prefix. "
            "Copy the secret again from the sender's settings."
        )
    return decoded


def _load_ed25519_signing_key(secret: str) -> Ed25519PrivateKey:
    where = "The whsk_ signing secret"
    raw = _decode_config_base64(where, secret[5:], "whsk_")
    if len(raw) not in (ED25519_KEY_BYTES, 2 * ED25519_KEY_BYTES):
        raise ConfigError(f"{where} decodes to {len(raw)} bytes; expected 32 or 64.")
    private_key = Ed25519PrivateKey.from_private_bytes(raw[:ED25519_KEY_BYTES])
    public = private_key.public_key().public_bytes_raw()
    if len(raw) > ED25519_KEY_BYTES and raw[ED25519_KEY_BYTES:] != public:
        raise ConfigError(f"{where} holds a public half that does not match its seed.")
    return private_key


def _header(headers: Mapping[str, str], name: str) -> str:
    return (headers.get(name) or "").strip(" \t")


def _require_header(headers: Mapping[str, str], name: str) -> str:
    value = _header(headers, name)
    if not value:
        raise _missing(name)
    return value


def _missing(header: str) -> MissingSignature:
    return MissingSignature(
        f"The delivery has no {header} header, or it is empty.",
        detail=f"header {header} is absent or empty",
    )


def _malformed(header: str, problem: str) -> InvalidSignature:
    return InvalidSignature(
        f"The delivery's {header} header is malformed.",
        detail=f"header {header} {problem}",
    )


def _is_message_id(text: str) -> bool:
    return bool(text) and all("!" <= char <= "~" for char in text)


def _parse_timestamp(header: str, text: str) -> int:
    # int() alone would also take '+', '_', spaces and non-ASCII digits.
    if not (text.isascii() and text.isdigit()):
        raise _malformed(header, "is not a whole number of seconds")
    if len(text) > MAX_TIMESTAMP_DIGITS:
        raise TimestampOutOfTolerance(
            detail=f"header {header} has {len(text)} digits, far outside tolerance"
        )
    return int(text)


def _check_tolerance(timestamp: int, now: float, tolerance_seconds: int) -> None:
    skew = timestamp - now
    if abs(skew) > tolerance_seconds:
        direction = "ahead of" if skew > 0 else "behind"
        raise TimestampOutOfTolerance(
            f"The delivery's timestamp is more than {tolerance_seconds} s "
            "from the gateway's clock.",
            detail=f"timestamp skew {abs(skew):.0f} s exceeds {tolerance_seconds} s "
            f"({direction} the gateway clock)",
        )


def _decode_hex_digest(text: str) -> bytes | None:
    # Checking length and alphabet first means fromhex cannot fail, and a
    # non-ASCII value never reaches a comparison (field case 3).
    if len(text) != 2 * SHA256_DIGEST_BYTES or not _HEX_DIGITS.issuperset(text):
        return None
    return bytes.fromhex(text)


def _decode_base64(text: str, size: int | None) -> bytes | None:
    if not text.isascii():
        return None
    try:
        decoded = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is a ValueError.
        return None
    if size is None:
        return decoded
    # A signature must be in canonical form: otherwise the unused low bits
    # of its last character make several spellings of one signature valid.
    if len(decoded) != size or base64.b64encode(decoded) != text.encode("ascii"):
        return None
    return decoded


def _append_decoded(into: list[bytes], text: str, size: int) -> None:
    decoded = _decode_base64(text, size)
    if decoded is not None:
        into.append(decoded)


def _usable_keys(
    keys: Sequence[SigningKey], now: float, kinds: frozenset[str]
) -> list[SigningKey]:
    of_kind = [key for key in keys if key.kind in kinds]
    usable = [key for key in of_kind if key.not_after is None or key.not_after >= now]
    if not usable:
        raise InvalidSignature(
            detail=f"no usable secret: {len(keys)} configured, "
            f"{len(of_kind) - len(usable)} expired, "
            f"{len(keys) - len(of_kind)} of a kind this scheme cannot use"
        )
    return usable


def _hmac_digest(material: bytes, prefix: bytes, body: bytes) -> bytes:
    # Feeding prefix and body separately avoids copying a large body.
    mac = hmac.new(material, prefix, hashlib.sha256)
    mac.update(body)
    return mac.digest()


def _find_hmac_key(
    prefix: bytes, body: bytes, digests: Sequence[bytes], keys: Sequence[SigningKey]
) -> SigningKey | None:
    if not digests:
        return None
    for key in keys:
        if key.kind != "hmac":
            continue
        expected = _hmac_digest(key.material, prefix, body)
        for digest in digests:
            if hmac.compare_digest(expected, digest):
                return key
    return None


def _find_ed25519_key(
    content: bytes, signatures: Sequence[bytes], keys: Sequence[SigningKey]
) -> SigningKey | None:
    for key in keys:
        if key.kind != "ed25519":
            continue
        try:
            public_key = Ed25519PublicKey.from_public_bytes(key.material)
        except ValueError:
            continue
        for signature in signatures:
            try:
                public_key.verify(signature, content)
            except Ed25519Mismatch:
                continue
            return key
    return None
