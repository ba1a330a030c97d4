"""What every signature scheme shares: keys, outcomes, the base class.

:class:`SigningKey`, :class:`Verification` and the :class:`Scheme` base
class, with the header, decoding and constant-time comparison helpers
the schemes in :mod:`gateway.schemes` and :mod:`gateway.schemes_standard`
build on. Internal: callers import these names from
:mod:`gateway.schemes`. Plain Python with no Flask import.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.errors import (
    ConfigError,
    InvalidSignature,
    MissingSignature,
    TimestampOutOfTolerance,
)

# A header may list several signatures (the sender rotating its secret).
# Only this many are tried, so a header with thousands of entries costs
# bounded work; later entries are ignored.
MAX_SIGNATURE_ENTRIES = 16

# More digits than this cannot be a plausible unix time in seconds; such a
# timestamp is refused as out of tolerance without converting it.
MAX_TIMESTAMP_DIGITS = 18
SHA256_DIGEST_BYTES = 32

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


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
class Claim:
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
        return SigningKey(key_id, secret_bytes(self.name, secret, key_id), not_after)

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
            check_tolerance(claim.timestamp, now, tolerance_seconds)
        usable = usable_keys(keys, now, self._key_kinds())
        matched = find_hmac_key(claim.prefix, body, claim.digests, usable)
        if matched is None:
            matched = self._find_other_key(claim, body, usable)
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
    def _read(self, headers: Mapping[str, str]) -> Claim:
        """Parse the scheme's headers, refusing missing or malformed ones."""

    def _key_kinds(self) -> frozenset[str]:
        return frozenset({"hmac"})

    def _find_other_key(
        self, claim: Claim, body: bytes, keys: Sequence[SigningKey]
    ) -> SigningKey | None:
        # Checked only when no HMAC key matched; a scheme with signatures
        # of another kind (Standard Webhooks' Ed25519) overrides it.
        return None

    def _hmac(self, secret: str, prefix: bytes, body: bytes) -> bytes:
        return hmac_digest(self.load_key(secret, "signing").material, prefix, body)


def secret_bytes(scheme: str, secret: str, key_id: str) -> bytes:
    """A secret's UTF-8 bytes; :class:`ConfigError` if empty or not text."""
    where = f"Secret {key_id!r} of the {scheme} scheme"
    if not secret or secret.isspace():
        raise ConfigError(f"{where} is empty. Set a non-empty secret.")
    try:
        return secret.encode("utf-8")
    except UnicodeEncodeError:
        # Environment values holding invalid UTF-8 arrive as surrogates.
        raise ConfigError(f"{where} is not valid UTF-8 text.") from None


def header_value(headers: Mapping[str, str], name: str) -> str:
    """The header's value without surrounding blanks; empty if absent."""
    return (headers.get(name) or "").strip(" \t")


def require_header(headers: Mapping[str, str], name: str) -> str:
    """The header's value; :class:`MissingSignature` if absent or empty."""
    value = header_value(headers, name)
    if not value:
        raise missing_header(name)
    return value


def missing_header(header: str) -> MissingSignature:
    """The error for a required header that is absent or empty."""
    return MissingSignature(
        f"The delivery has no {header} header, or it is empty.",
        detail=f"header {header} is absent or empty",
    )


def malformed_header(header: str, problem: str) -> InvalidSignature:
    """The error for a header that is present but malformed."""
    return InvalidSignature(
        f"The delivery's {header} header is malformed.",
        detail=f"header {header} {problem}",
    )


def parse_timestamp(header: str, text: str) -> int:
    """A header's unix seconds, refusing anything but plain digits."""
    # int() alone would also take '+', '_', spaces and non-ASCII digits.
    if not (text.isascii() and text.isdigit()):
        raise malformed_header(header, "is not a whole number of seconds")
    if len(text) > MAX_TIMESTAMP_DIGITS:
        raise TimestampOutOfTolerance(
            detail=f"header {header} has {len(text)} digits, far outside tolerance"
        )
    return int(text)


def check_tolerance(timestamp: int, now: float, tolerance_seconds: int) -> None:
    """Refuse a signed time too far from ``now`` in either direction."""
    skew = timestamp - now
    if abs(skew) > tolerance_seconds:
        direction = "ahead of" if skew > 0 else "behind"
        raise TimestampOutOfTolerance(
            f"The delivery's timestamp is more than {tolerance_seconds} s "
            "from the gateway's clock.",
            detail=f"timestamp skew {abs(skew):.0f} s exceeds {tolerance_seconds} s "
            f"({direction} the gateway clock)",
        )


def decode_hex_digest(text: str) -> bytes | None:
    """A 64-digit hex SHA-256 digest as bytes, or ``None``."""
    # Checking length and alphabet first means fromhex cannot fail, and a
    # non-ASCII value never reaches a comparison (field case 3).
    if len(text) != 2 * SHA256_DIGEST_BYTES or not _HEX_DIGITS.issuperset(text):
        return None
    return bytes.fromhex(text)


def decode_base64(text: str, size: int | None) -> bytes | None:
    """Strict base64 as bytes, or ``None``; with ``size``, canonical only."""
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


def usable_keys(
    keys: Sequence[SigningKey], now: float, kinds: frozenset[str]
) -> list[SigningKey]:
    """The keys of ``kinds`` not expired at ``now``; refuses if none."""
    of_kind = [key for key in keys if key.kind in kinds]
    usable = [key for key in of_kind if key.not_after is None or key.not_after >= now]
    if not usable:
        raise InvalidSignature(
            detail=f"no usable secret: {len(keys)} configured, "
            f"{len(of_kind) - len(usable)} expired, "
            f"{len(keys) - len(of_kind)} of a kind this scheme cannot use"
        )
    return usable


def hmac_digest(material: bytes, prefix: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of ``prefix`` followed by ``body``."""
    # Feeding prefix and body separately avoids copying a large body.
    mac = hmac.new(material, prefix, hashlib.sha256)
    mac.update(body)
    return mac.digest()


def find_hmac_key(
    prefix: bytes, body: bytes, digests: Sequence[bytes], keys: Sequence[SigningKey]
) -> SigningKey | None:
    """The first HMAC key whose digest equals a candidate, or ``None``."""
    if not digests:
        return None
    for key in keys:
        if key.kind != "hmac":
            continue
        expected = hmac_digest(key.material, prefix, body)
        for digest in digests:
            if hmac.compare_digest(expected, digest):
                return key
    return None
