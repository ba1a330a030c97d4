"""Outbound clients bound to the gateway's message status tracker.

A message sent through the provider's API is recorded as ``sent`` in the
gateway's store as soon as the provider accepts it, so the webhooks that
follow (``message.delivered``, ``message.read``...) complete its history
(CONTRACT.md section 7). The status never moves backwards: a ``sent``
recorded after a ``delivered`` webhook is kept in the history only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .client import API_KEY_VARIABLE, API_URL_VARIABLE, IntegrationClient, SentMessage
from .errors import ConfigError
from .messages import record_status
from .store import Store

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger(__name__)

SENT_STATUS = "sent"


def tracking_client(
    store: Store,
    api_key: str,
    base_url: str,
    *,
    on_sent: Callable[[SentMessage], None] | None = None,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> IntegrationClient:
    """Return an :class:`IntegrationClient` that records every send in ``store``.

    Each message the provider accepts is recorded as ``sent``, timed by
    the provider's ``created_at`` when it gave one. A failure to record
    is logged and never turns the accepted send into an error, since the
    caller would then send the message again.

    :param on_sent: called after the recording with the sent message.
    :param clock: unix seconds, for the recording time and the client's
        HTTP-date ``Retry-After`` values.
    :param options: further :class:`IntegrationClient` arguments
        (``timeout``, ``retries``, ``debug``, ``session``...).
    :raises ValueError: for an empty key or a malformed URL.
    """
    recorder = _record_sent(store, clock)
    if on_sent is None:
        hook = recorder
    else:
        extra = on_sent

        def hook(message: SentMessage) -> None:
            recorder(message)
            extra(message)

    return IntegrationClient(api_key, base_url, on_sent=hook, clock=clock, **options)


def create_client(app: Flask, **options: Any) -> IntegrationClient:
    """Return a tracking client configured from ``app``'s settings.

    Uses ``INTEGRATION_API_KEY`` and ``INTEGRATION_API_URL`` as the app
    read them at start-up, and records sends in the app's event store
    with the app's clock. Close the client when done with it.

    :param options: further :func:`tracking_client` arguments.
    :raises ConfigError: naming the variable that is missing.
    """
    gateway = app.extensions["gateway"]
    settings = gateway.settings
    if not settings.api_key:
        raise ConfigError(f"{API_KEY_VARIABLE} is not set. Set it to send messages.")
    if not settings.api_url:
        raise ConfigError(f"{API_URL_VARIABLE} is not set. Set it to send messages.")
    options.setdefault("clock", gateway.clock)
    return tracking_client(gateway.store, settings.api_key, settings.api_url, **options)


def _record_sent(
    store: Store, clock: Callable[[], float]
) -> Callable[[SentMessage], None]:
    def record(message: SentMessage) -> None:
        status_at = message.created_at.timestamp() if message.created_at else None
        moved = record_status(
            message.id, SENT_STATUS, status_at=status_at, store=store, now=clock()
        )
        logger.info(
            "message status recorded",
            extra={
                "message_id": message.id,
                "message_status": SENT_STATUS,
                "advanced": moved,
            },
        )

    return record
