"""Keeps each message's latest delivery status from the provider's events.

Listens to ``message.sent``, ``message.delivered``, ``message.read`` and
``message.failed`` of the ``integration`` source. Events may arrive out
of order and more than once; the status never moves backwards (see
``gateway.messages``). Load it with ``GATEWAY_HANDLERS=handlers.message_status``.
"""

from __future__ import annotations

import logging

from gateway import DoNotRetry, Event, on
from gateway.messages import STATUS_RANKS, parse_timestamp, record_status

logger = logging.getLogger(__name__)


@on("message.*", source="integration")
def track_message_status(source: str, event: Event) -> None:
    """Record the status an event reports for its message."""
    status = event.type.removeprefix("message.")
    if status not in STATUS_RANKS:
        return
    data = event.data if isinstance(event.data, dict) else {}
    message_id = data.get("id")
    if not isinstance(message_id, str) or not message_id:
        # Retrying cannot add a missing id; keep it as a dead letter to inspect.
        raise DoNotRetry(f"{event.type} event {event.id} has no data.id")
    error = data.get("error")
    moved = record_status(
        message_id,
        status,
        status_at=parse_timestamp(data.get("timestamp")),
        event_id=event.id,
        error=str(error) if error is not None else None,
    )
    logger.info(
        "message status recorded",
        extra={"message_id": message_id, "message_status": status, "advanced": moved},
    )
