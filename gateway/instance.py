"""The running gateway instance: what one app is built on, and how to reach it.

:class:`Gateway` bundles the settings, store, dispatcher and limiter of one
application; :func:`get_gateway` finds it from a view, a hook or a command.
Both are importable from :mod:`gateway.web` too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app
from flask_limiter import Limiter

from .backpressure import Backpressure
from .config import Settings
from .dispatch import Dispatcher
from .provider import ProviderHealth
from .refusals import RefusalRecorder
from .store import Store


@dataclass
class Gateway:
    """Everything one app instance runs on, kept in ``app.extensions``."""

    settings: Settings
    store: Store
    dispatcher: Dispatcher
    limiter: Limiter
    clock: Callable[[], float]
    delivery_observers: list[Callable[[Mapping[str, Any]], None]] = field(
        default_factory=list
    )
    schema_ready: bool = False
    provider_health: ProviderHealth | None = None
    refusals: RefusalRecorder | None = None
    backpressure: Backpressure | None = None

    def ensure_schema(self) -> None:
        """Create the store's schema once; retried while the store is down."""
        if not self.schema_ready:
            self.store.migrate()
            if self.refusals is not None:
                self.refusals.log.migrate()
            self.schema_ready = True


def get_gateway(app: Flask | None = None) -> Gateway:
    """Return the :class:`Gateway` of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    gateway: Gateway = target.extensions["gateway"]
    return gateway
