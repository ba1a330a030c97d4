"""Presentation helpers: masking secrets, formatting times and numbers.

Plain Python with no Flask import, so the masking rules can be tested on
their own. The console shows stored headers and payloads to operators;
anything that looks like a credential is replaced before it reaches a
page (issue 9).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

MASK = "•••••• (masked)"
_SECRET_WORDS = (
    "secret",
    "signature",
    "password",
    "passwd",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "credential",
    "cookie",
    "hmac",
    "private",
)
_SECRET_PARTS = frozenset({"token", "auth", "sig", "key"})
_NOT_SECRET_PARTS = frozenset({"id", "type", "at", "count", "name", "url"})
_SECRET_VALUE = re.compile(
    r"^\s*(bearer|basic|token)\s+\S"
    r"|^(sha1|sha256|sha512|v0|v1)[=,]"
    r"|whsec_"
    r"|^t=\d+,v1="
    r"|^(sk|rk|pk|whsec)_(live|test)_"
    r"|^[0-9a-f]{40,}$"
    r"|^[A-Za-z0-9+/_-]{40,}={0,2}$",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """Whether a header or field name suggests its value is a credential.

    ``x-hub-signature-256``, ``authorization``, ``api_key`` and ``token``
    do; ``key_id`` and ``token_type`` do not.
    """
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        return True
    parts = [part for part in re.split(r"[-_.\s]+", lowered) if part]
    if parts and parts[-1] in _NOT_SECRET_PARTS:
        return False
    return any(part in _SECRET_PARTS for part in parts)


def looks_secret(value: str) -> bool:
    """Whether a value looks like a signature, key or bearer credential."""
    return bool(_SECRET_VALUE.search(value))


def masked_headers(headers: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Return (name, shown value, is masked) for each header, sorted by name."""
    rows = []
    for name in sorted(headers, key=str.lower):
        value = str(headers[name])
        masked = is_secret_name(name) or looks_secret(value)
        rows.append((name, MASK if masked else value, masked))
    return rows


def masked_payload(value: Any) -> Any:
    """Return a copy of a payload with values under secret-like keys masked."""
    if isinstance(value, Mapping):
        return {
            key: MASK
            if is_secret_name(str(key)) and not isinstance(item, (Mapping, list))
            else masked_payload(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked_payload(item) for item in value]
    return value


def pretty_json(value: Any) -> str:
    """Indented JSON for reading, non-ASCII kept as is."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def utc_text(moment: float | datetime | None) -> str:
    """A unix time or datetime as ``2026-01-01 00:00:00Z``; empty for None."""
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso_text(moment: float | datetime | None) -> str:
    """A unix time or datetime in ISO 8601 (for ``<time datetime>``)."""
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_form_time(text: str | None) -> float | None:
    """Read an ``<input type=datetime-local>`` value, taken as UTC.

    :raises ValueError: the text is not a date-time.
    """
    if not text or not text.strip():
        return None
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` (0..1) percentile of ``values`` by nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))
    return ordered[index]


def milliseconds(value: float | None) -> str:
    """A duration in ms for a table cell: ``12.3 ms``, ``1.20 s``, or a dash."""
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms"


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: max(limit - 1, 0)].rstrip() + "…"


def body_summary(size: int | None, sha256: str | None) -> str:
    """A refused body as ``1,234 B · sha256 0123abcd…``; a dash if unknown."""
    parts = []
    if size is not None:
        parts.append(f"{size:,} B")
    if sha256:
        parts.append(f"sha256 {sha256[:12]}…")
    return " · ".join(parts) or "–"
