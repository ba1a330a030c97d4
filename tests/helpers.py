"""Small helpers the tests share: test secrets and signed deliveries.

Plain Python with no pytest or gateway import, so the handler module a
real server loads (``tests.handlers_for_tests``, through
``tests.servers``) can import it too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SECRET = "testsecret"
SIGNATURE_HEADER = "X-Integration-Signature"


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    """Return the hex HMAC-SHA256 of ``body``, as ``hmac-sha256`` signs it."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(
    event_id: str, event_type: str = "ping", data: Mapping[str, Any] | None = None
) -> bytes:
    """Return the JSON body of one event; ``data`` is left out when None."""
    payload: dict[str, Any] = {"id": event_id, "type": event_type}
    if data is not None:
        payload["data"] = dict(data)
    return json.dumps(payload).encode()


def signed_headers(body: bytes, secret: str = SECRET, **extra: str) -> dict[str, str]:
    """Return the headers of an ``hmac-sha256`` delivery of ``body``.

    ``extra`` headers are added by name (``**{"X-Forwarded-For": ip}``).
    """
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: hex_hmac(body, secret),
        **extra,
    }


def deliver(
    client: Any,
    event_id: str,
    *,
    secret: str = SECRET,
    source: str = "integration",
    event_type: str = "ping",
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> Any:
    """POST a signed delivery of one event with a Flask test client.

    Returns the test client's response; ``options`` go to
    ``client.post`` (``environ_base=...``).
    """
    body = event_body(event_id, event_type, data)
    return client.post(
        f"/api/webhooks/{source}",
        data=body,
        headers=signed_headers(body, secret, **dict(headers or {})),
        **options,
    )


def post(client: Any, source: str, body: bytes, headers: Mapping[str, str]) -> Any:
    """POST ``body`` to a source with a Flask test client, as JSON.

    ``headers`` (the signature, say) are sent as given, after a JSON
    ``Content-Type`` they may replace.
    """
    merged = {"Content-Type": "application/json", **headers}
    return client.post(f"/api/webhooks/{source}", data=body, headers=merged)
