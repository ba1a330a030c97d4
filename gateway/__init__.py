"""Webhook gateway: verify, store and dispatch provider webhooks.

Public names: :func:`create_app`, :func:`on`, :func:`signal`, :class:`Event`
and :class:`DoNotRetry` (raised by a handler whose failure no retry fixes).
"""

from .dispatch import DoNotRetry
from .events import Event
from .signals import on, signal
from .web import create_app

__all__ = ["DoNotRetry", "Event", "create_app", "on", "signal"]
