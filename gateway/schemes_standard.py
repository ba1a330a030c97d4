"""The Standard Webhooks scheme (``standard``), with its Ed25519 support.

Standard Webhooks (and Svix, which uses the same format) signs with
HMAC-SHA256 (``v1`` entries, ``whsec_`` secrets) or Ed25519 (``v1a``
entries, ``whpk_`` public keys to verify, ``whsk_`` secrets to sign).
Internal: :func:`gateway.schemes.get_scheme` returns it. Plain Python
with no Flask import.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidSignature as Ed25519Mismatch
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gateway.errors import ConfigError
from gateway.schemes_base import (
    MAX_SIGNATURE_ENTRIES,
    SHA256_DIGEST_BYTES,
    Claim,
    Scheme,
    SigningKey,
    decode_base64,
    header_value,
    hmac_digest,
    malformed_header,
    parse_timestamp,
    require_header,
    secret_bytes,
)

# A shorter Standard Webhooks key is refused at start-up: a short or empty
# HMAC key would make forgeries easy (field case 5).
MIN_STANDARD_KEY_BYTES = 16
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64


class StandardScheme(Scheme):
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
        secret_bytes(self.name, secret, key_id)
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
            digest = hmac_digest(key.material, b"", content)
            entry = "v1," + base64.b64encode(digest).decode("ascii")
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(now),
            "webhook-signature": entry,
        }

    def _read(self, headers: Mapping[str, str]) -> Claim:
        # Svix's own names are used only when the standard signature header
        # is absent, so a refusal names the standard header.
        use_svix = not header_value(headers, "webhook-signature") and bool(
            header_value(headers, "svix-signature")
        )
        family = "svix" if use_svix else "webhook"
        header = f"{family}-signature"
        value = require_header(headers, header)
        message_id = require_header(headers, f"{family}-id")
        timestamp_text = require_header(headers, f"{family}-timestamp")
        if not _is_message_id(message_id):
            raise malformed_header(
                f"{family}-id", "is not printable ASCII without spaces"
            )
        timestamp = parse_timestamp(f"{family}-timestamp", timestamp_text)
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
            raise malformed_header(header, "has no v1 or v1a entry")
        if not digests and not signatures:
            raise malformed_header(header, "has no well-formed v1 or v1a entry")
        prefix = f"{message_id}.{timestamp_text}.".encode("ascii")
        return Claim(prefix, digests, timestamp, signatures)

    def _key_kinds(self) -> frozenset[str]:
        return frozenset({"hmac", "ed25519"})

    def _find_other_key(
        self, claim: Claim, body: bytes, keys: Sequence[SigningKey]
    ) -> SigningKey | None:
        if not claim.ed25519_signatures:
            return None
        content = claim.prefix + body
        return _find_ed25519_key(content, claim.ed25519_signatures, keys)


def _decode_config_base64(where: str, text: str, prefix: str) -> bytes:
    # Secrets copied from senders' dashboards sometimes lose their '='
    # padding; restoring it is unambiguous. Anything outside the base64
    # alphabet is refused rather than skipped.
    decoded = decode_base64(text + "=" * (-len(text) % 4), None)
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


def _is_message_id(text: str) -> bool:
    return bool(text) and all("!" <= char <= "~" for char in text)


def _append_decoded(into: list[bytes], text: str, size: int) -> None:
    decoded = decode_base64(text, size)
    if decoded is not None:
        into.append(decoded)


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
