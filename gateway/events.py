"""The event model, body parsing, and event id and type extraction.

Plain Python: no Flask here, so parsing can be tested and reused without
an app. Parsing happens only after the signature has been checked over
the raw bytes (CONTRACT.md section 1).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs

from .errors import InvalidPayload, UnsupportedMediaType

JSON_TYPES = frozenset({"application/json", "text/json"})
FORM_TYPE = "application/x-www-form-urlencoded"
# A compressed body is refused rather than inflated: inflating would let a
# small signed body grow past the size limit after it was checked, and no
# supported provider compresses deliveries (docs/security.md).
IDENTITY_ENCODINGS = frozenset({"", "identity"})
MAX_NESTING_DEPTH = 128
MAX_ID_CHARS = 256
MAX_TYPE_CHARS = 200
# Headers a provider uses to name one delivery, tried when the body has no
# id (CONTRACT.md section 2, "falls back to a delivery header").
DELIVERY_HEADERS = (
    "x-github-delivery",
    "webhook-id",
    "svix-id",
    "x-shopify-webhook-id",
    "x-delivery-id",
    "x-webhook-id",
    "x-integration-delivery",
)
# Hop-by-hop and transport headers that say nothing about the delivery.
_DROPPED_HEADERS = frozenset(
    {"authorization", "cookie", "proxy-authorization", "connection", "keep-alive"}
)


@dataclass(frozen=True)
class Event:
    """One stored webhook event, as handlers receive it.

    ``payload`` is the parsed body; ``data`` is ``payload["data"]`` when it
    is present (else ``None``); ``headers`` are the delivery's headers with
    signature and credential headers removed. ``attempt`` counts this
    handler's tries of the event, from 1; handlers run at least once, so
    they should use ``id`` and ``attempt`` to stay idempotent.
    """

    id: str
    type: str
    source: str
    received_at: datetime
    payload: Mapping[str, Any] = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    attempt: int = 1

    @property
    def data(self) -> Any:
        """The payload's ``data`` member, or ``None`` when absent."""
        return self.payload.get("data")


@dataclass(frozen=True)
class ParsedDelivery:
    """What the parser learned from one verified delivery."""

    event_id: str
    event_type: str
    payload: dict[str, Any]
    challenge: str | None = None
    # The JSON text the payload was parsed from, when it can be stored as
    # is (UTF-8, no byte-order mark): saves encoding the payload again.
    payload_json: str | None = None


def parse_delivery(
    scheme: str,
    body: bytes,
    content_type: str | None,
    headers: Mapping[str, str],
) -> ParsedDelivery:
    """Parse a verified body and find its event id and type.

    :param scheme: the source's scheme name; it decides where id and type
        live (CONTRACT.md section 2).
    :param headers: the delivery's headers with lower-case names.
    :raises UnsupportedMediaType: the content type is not one the scheme
        takes (JSON for all; form-encoded ``payload=`` for GitHub too), or
        the body has a ``Content-Encoding`` such as gzip.
    :raises InvalidPayload: bad JSON, not an object, a number too large
        for a float, text that is not valid Unicode, or no event type.
    """
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding not in IDENTITY_ENCODINGS:
        raise UnsupportedMediaType(
            "This source does not take compressed bodies; send them uncompressed."
        )
    payload, json_bytes = _parse_body(scheme, body, content_type)
    if scheme == "slack" and payload.get("type") == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or not challenge:
            raise InvalidPayload("A url_verification request must carry a challenge.")
        return ParsedDelivery("", "url_verification", payload, challenge=challenge)
    event_type = _event_type(scheme, payload, headers)
    event_id = _event_id(scheme, payload, headers, body)
    return ParsedDelivery(
        event_id, event_type, payload, payload_json=_json_text(json_bytes)
    )


def make_event(
    *,
    source: str,
    delivery: ParsedDelivery,
    received_at: float,
    headers: Mapping[str, str],
    signature_headers: tuple[str, ...],
) -> Event:
    """Build the :class:`Event` to store, with sensitive headers removed."""
    kept = {
        name: value
        for name, value in headers.items()
        if name not in signature_headers and name not in _DROPPED_HEADERS
    }
    return Event(
        id=delivery.event_id,
        type=delivery.event_type,
        source=source,
        received_at=datetime.fromtimestamp(received_at, tz=UTC),
        payload=delivery.payload,
        headers=MappingProxyType(kept),
    )


def media_type(content_type: str | None) -> str:
    """Return the bare, lower-case media type of a Content-Type value."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _parse_body(
    scheme: str, body: bytes, content_type: str | None
) -> tuple[dict[str, Any], bytes]:
    """Return the payload and the exact JSON bytes it was parsed from."""
    kind = media_type(content_type)
    if kind == FORM_TYPE and scheme == "github":
        # GitHub's "form" content type wraps the JSON in payload=...; the
        # signature covers the encoded bytes, checked before we get here.
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=False)
        except UnicodeDecodeError:
            raise InvalidPayload("A form-encoded body must be ASCII.") from None
        values = fields.get("payload")
        if not values:
            raise InvalidPayload("A form-encoded delivery must carry payload=.")
        body = values[0].encode("utf-8")
    elif kind and kind not in JSON_TYPES and not kind.endswith("+json"):
        accepted = "application/json"
        if scheme == "github":
            accepted += " or application/x-www-form-urlencoded"
        raise UnsupportedMediaType(
            f"This source takes {accepted} bodies.",
            detail=f"content type {kind[:100]!r} is not {accepted}",
        )
    return _load_json_object(body), body


def _json_text(json_bytes: bytes) -> str | None:
    """The parsed JSON as text, if reading that text back gives the payload.

    ``json.loads`` takes UTF-16 and UTF-32 bytes and skips a UTF-8 BOM;
    as text those would not read back, so the caller encodes instead.
    """
    try:
        text = json_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if text.startswith("\ufeff") else text


def _load_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise InvalidPayload("The body is empty; it must be a JSON object.")
    try:
        # json.loads on bytes detects UTF-8/16/32 and skips a UTF-8 BOM.
        payload = json.loads(
            body, parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError):
        raise InvalidPayload("The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("The body must be a JSON object.")
    depth, has_lone_surrogate = _inspect(payload)
    if depth > MAX_NESTING_DEPTH:
        raise InvalidPayload(f"The body nests deeper than {MAX_NESTING_DEPTH} levels.")
    if has_lone_surrogate:
        # JSON's \ud800-style escapes can name half of a UTF-16 pair, which
        # no UTF-8 store or handler can hold.
        raise InvalidPayload("The body holds text that is not valid Unicode.")
    return payload


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # 1e400 parses to infinity, which JSON cannot express when the event
    # is stored and handed on.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _inspect(value: Any) -> tuple[int, bool]:
    """Measure a parsed JSON value: (nesting depth, holds a lone surrogate).

    Keys and strings are both checked. Iterative, so depth costs no stack.
    """
    deepest = 0
    has_lone_surrogate = False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            has_lone_surrogate = has_lone_surrogate or _has_lone_surrogate(item)
        elif isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((key, level) for key in item)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest, has_lone_surrogate


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _event_type(
    scheme: str, payload: Mapping[str, Any], headers: Mapping[str, str]
) -> str:
    name: Any
    if scheme == "github":
        name = headers.get("x-github-event", "").strip()
        action = payload.get("action")
        if name and isinstance(action, str) and action:
            name = f"{name}.{action}"
    elif scheme == "slack":
        inner = payload.get("event")
        name = inner.get("type") if isinstance(inner, dict) else payload.get("type")
    elif scheme == "shopify":
        name = headers.get("x-shopify-topic", "").strip()
    else:
        name = payload.get("type")
    if not isinstance(name, str) or not name.strip():
        raise InvalidPayload("The delivery does not name an event type.")
    event_type: str = name.strip()
    if len(event_type) > MAX_TYPE_CHARS or not event_type.isprintable():
        raise InvalidPayload("The event type is too long or not printable.")
    return event_type


def _event_id(
    scheme: str, payload: Mapping[str, Any], headers: Mapping[str, str], body: bytes
) -> str:
    candidates: list[Any] = []
    if scheme == "github":
        candidates.append(headers.get("x-github-delivery"))
    elif scheme == "slack":
        candidates.append(payload.get("event_id"))
    elif scheme == "shopify":
        candidates.append(headers.get("x-shopify-webhook-id"))
    else:
        candidates.append(payload.get("id"))
    candidates.extend(headers.get(name) for name in DELIVERY_HEADERS)
    for candidate in candidates:
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            candidate = str(candidate)
        if isinstance(candidate, str):
            candidate = candidate.strip()
            if candidate and len(candidate) <= MAX_ID_CHARS and candidate.isprintable():
                return candidate
    return "sha256:" + hashlib.sha256(body).hexdigest()
