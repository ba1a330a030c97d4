"""Why a signature was refused, in words an operator can act on.

:func:`diagnose` re-runs a source's verification step by step: headers,
timestamp, then the secrets, and when no secret matched it looks for the
usual causes: a secret that has expired, a body changed after signing (a
trailing newline added or removed, JSON re-serialised by a proxy or by
the sender's framework). It never returns a secret, a signature or the
body; only key ids and the names of the checks.

Plain Python, no Flask: the web layer uses it to enrich the refusal
record, the command line to check a saved request file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .config import SourceConfig
from .errors import SignatureError, TimestampOutOfTolerance
from .schemes import SigningKey

# On the request path the body variants are tried only for bodies up to
# this size, so a flood of large forged deliveries cannot make each
# refusal expensive. The command line has no such cap.
REQUEST_PATH_MAX_BODY_BYTES = 64 * 1024
# Any timestamp passes with this tolerance; used to check the secrets
# apart from the timestamp, which is judged on its own.
_ANY_TIME_SECONDS = 10**15


@dataclass(frozen=True)
class Check:
    """One step of the verification and how it went."""

    name: str
    passed: bool
    text: str


@dataclass(frozen=True)
class Diagnosis:
    """Every check run on a delivery, and whether it would be accepted."""

    checks: list[Check] = field(default_factory=list)
    key_id: str | None = None
    hints: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks)

    def summary(self) -> str:
        """One line: the first failed check and the hints, or the match."""
        failed = [check for check in self.checks if not check.passed]
        if not failed:
            return f"accepted: secret {self.key_id!r} matched"
        return "; ".join([failed[0].text, *self.hints])


def diagnose(
    source: SourceConfig,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
    try_body_variants: bool = True,
) -> Diagnosis:
    """Check a delivery against a source's secrets, saying which check fails.

    ``headers`` maps lower-case names to values. ``now`` is the time to
    judge timestamps and expiry dates against (unix seconds).
    """
    scheme = source.scheme
    checks: list[Check] = []
    hints: list[str] = []
    try:
        verification = scheme.verify(
            body,
            headers,
            source.keys,
            now=now,
            tolerance_seconds=source.tolerance_seconds,
        )
    except TimestampOutOfTolerance as error:
        checks.append(Check("headers", True, "signature headers present"))
        checks.append(Check("timestamp", False, error.detail))
        key_id = _match_ignoring_time(source, body, headers, now)
        if key_id is not None:
            checks.append(Check("secret", True, f"secret {key_id!r} matches"))
            hints.append(
                "the signature is right but old or early: check the sender's "
                "clock, or whether the delivery was queued or replayed"
            )
            return Diagnosis(checks, key_id, hints)
        checks.append(Check("secret", False, "no configured secret matched"))
    except SignatureError as error:
        if not _is_secret_failure(error):
            checks.append(Check("headers", False, error.detail))
            return Diagnosis(checks, None, hints)
        checks.append(Check("headers", True, "signature headers present"))
        if scheme.timestamped:
            checks.append(Check("timestamp", True, "timestamp within tolerance"))
        checks.append(Check("secret", False, error.detail))
    else:
        checks.append(Check("headers", True, "signature headers present"))
        if scheme.timestamped:
            checks.append(Check("timestamp", True, "timestamp within tolerance"))
        checks.append(Check("secret", True, f"secret {verification.key_id!r} matches"))
        return Diagnosis(checks, verification.key_id, hints)
    hints.extend(_expired_match(source, body, headers, now))
    if try_body_variants and not hints:
        hints.extend(_variant_match(source, body, headers, now))
    if not hints:
        hints.append(
            "the sender signs with a secret not configured here, or the body "
            "was changed in transit: compare the body's SHA-256 on both sides"
        )
    return Diagnosis(checks, None, hints)


def explain_refusal(
    error: SignatureError,
    source: SourceConfig,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
) -> str:
    """Return a refused signature's operator-only detail, with likely causes.

    Cheap on the request path: body variants are tried only for small
    bodies, and only when no secret matched.
    """
    if not _is_secret_failure(error) and not isinstance(error, TimestampOutOfTolerance):
        return error.detail
    diagnosis = diagnose(
        source,
        body,
        headers,
        now=now,
        try_body_variants=len(body) <= REQUEST_PATH_MAX_BODY_BYTES,
    )
    return "; ".join([error.detail, *diagnosis.hints])


def _is_secret_failure(error: SignatureError) -> bool:
    # The schemes word a secret mismatch "no configured secret matched" or
    # "no usable secret"; every other InvalidSignature is a header problem.
    return error.detail.startswith(("no configured secret", "no usable secret"))


def _match(
    source: SourceConfig,
    body: bytes,
    headers: Mapping[str, str],
    keys: Sequence[SigningKey],
    now: float,
    tolerance_seconds: int,
) -> str | None:
    if not keys:
        return None
    try:
        return source.scheme.verify(
            body, headers, keys, now=now, tolerance_seconds=tolerance_seconds
        ).key_id
    except SignatureError:
        return None


def _match_ignoring_time(
    source: SourceConfig, body: bytes, headers: Mapping[str, str], now: float
) -> str | None:
    return _match(source, body, headers, source.keys, now, _ANY_TIME_SECONDS)


def _expired_match(
    source: SourceConfig, body: bytes, headers: Mapping[str, str], now: float
) -> list[str]:
    expired = [
        dataclasses.replace(key, not_after=None)
        for key in source.keys
        if key.not_after is not None and key.not_after < now
    ]
    key_id = _match(source, body, headers, expired, now, _ANY_TIME_SECONDS)
    if key_id is None:
        return []
    moment = next(key.not_after for key in source.keys if key.key_id == key_id)
    when = datetime.fromtimestamp(moment or 0, tz=UTC).isoformat(timespec="seconds")
    return [
        f"it matches secret {key_id!r}, which expired at {when}: the sender "
        "still signs with the old secret"
    ]


def _variant_match(
    source: SourceConfig, body: bytes, headers: Mapping[str, str], now: float
) -> list[str]:
    for label, variant in _body_variants(body):
        key_id = _match(source, variant, headers, source.keys, now, _ANY_TIME_SECONDS)
        if key_id is not None:
            return [
                f"secret {key_id!r} matches the body {label}: the bytes received "
                "differ from the bytes signed (a proxy or the sender's framework "
                "changed them)"
            ]
    return []


def _body_variants(body: bytes) -> list[tuple[str, bytes]]:
    variants: list[tuple[str, bytes]] = []
    stripped = body.rstrip(b"\r\n")
    if stripped != body:
        variants.append(("without its trailing newline", stripped))
    else:
        variants.append(("with a trailing newline", body + b"\n"))
    if b"\r\n" in body:
        variants.append(
            ("with CRLF line ends turned to LF", body.replace(b"\r\n", b"\n"))
        )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return variants
    compact = (",", ":")
    spaced = (", ", ": ")
    for label, separators, ensure_ascii in (
        ("re-serialised compactly", compact, False),
        ("re-serialised with spaces", spaced, False),
        ("re-serialised with \\u escapes", compact, True),
        ("re-serialised with spaces and \\u escapes", spaced, True),
    ):
        text = json.dumps(
            payload, separators=separators, ensure_ascii=ensure_ascii
        ).encode("utf-8")
        if text != body and all(text != seen for _, seen in variants):
            variants.append((label, text))
    return variants
