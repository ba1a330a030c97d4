"""Writes one audit log line for every event the gateway dispatches.

A plain record for compliance and debugging: source, event id and type,
when it was received, the dispatch attempt and the payload's top-level
keys (never the payload's values, which may hold personal data). Load it
with ``GATEWAY_HANDLERS=handlers.audit``; send the ``handlers.audit``
logger wherever your audit trail lives.
"""

from __future__ import annotations

import logging

from gateway import Event, on

logger = logging.getLogger(__name__)


@on("*")
def audit_event(source: str, event: Event) -> None:
    """Log the event's identity and shape, without its values."""
    logger.info(
        "event audited",
        extra={
            "source": source,
            "event_id": event.id,
            "event_type": event.type,
            "received_at": event.received_at.isoformat(),
            "attempt": event.attempt,
            "payload_keys": ",".join(sorted(str(key) for key in event.payload)[:50]),
        },
    )
