"""The events console: web pages to watch, search and replay deliveries.

Served by the gateway's own Flask app under ``/console`` when
``GATEWAY_CONSOLE`` is on and credentials are configured (issue 9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from .auth import ConsoleAuth
from .state import ConsoleState
from .views import console_blueprint

if TYPE_CHECKING:
    from ..web import Gateway


def register_console(app: Flask, gateway: Gateway) -> None:
    """Mount the console on ``app``; the caller checks it is enabled."""
    state = ConsoleState(ConsoleAuth(gateway.settings), gateway.clock)
    app.extensions["console"] = state
    gateway.delivery_observers.append(state.observe_answer)
    app.register_blueprint(console_blueprint(gateway.limiter))
