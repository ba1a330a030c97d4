"""Webhook gateway: verify, store and dispatch provider webhooks.

Public names: :func:`create_app`, :func:`on`, :func:`signal`, :class:`Event`
and :class:`DoNotRetry` (raised by a handler whose failure no retry fixes).
"""

from .dispatch import DoNotRetry, on, signal
from .events import Event
from .web import create_app

__all__ = ["DoNotRetry", "Event", "create_app", "on", "signal"]
