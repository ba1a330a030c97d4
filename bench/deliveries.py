"""Signed, unique deliveries for the load generators.

Every delivery has its own event id, so the gateway's deduplication
never answers from its short-circuit: each one is verified, parsed,
stored durably and dispatched. The body is shaped like the first
provider's ``message.delivered`` events (about 300 bytes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

SIGNATURE_HEADER = "X-Integration-Signature"


def body(event_id: str, *, sent_at: float | None = None) -> bytes:
    """Return the JSON body of one delivery, as a provider would send it."""
    document: dict[str, object] = {
        "id": event_id,
        "type": "message.delivered",
        "created_at": "2026-12-04T09:15:09Z",
        "data": {
            "id": "msg_" + hashlib.sha256(event_id.encode()).hexdigest()[:12],
            "status": "delivered",
            "to": "+15555550123",
            "channel": "sms",
            "clinic_id": "clinic_042",
            "timestamp": "2026-12-04T09:15:09Z",
        },
    }
    if sent_at is not None:
        document["sent_at"] = sent_at
    return json.dumps(document, separators=(", ", ": ")).encode()


def sign(secret: str, payload: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``payload`` (the hmac-sha256 scheme)."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def write_file(path: Path, secret: str, count: int, prefix: str) -> Path:
    """Write ``count`` signed deliveries, one ``<signature> <body>`` a line.

    The wrk script reads this file; bodies hold no newline.
    """
    stamp = int(time.time() * 1000)
    with path.open("wb") as handle:
        for index in range(count):
            payload = body(f"evt_{prefix}_{stamp}_{index:07d}")
            handle.write(sign(secret, payload).encode() + b" " + payload + b"\n")
    return path
