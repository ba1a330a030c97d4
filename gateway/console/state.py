"""The console's per-app state: its authenticator and recent answers."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from .auth import ConsoleAuth

ANSWER_HISTORY = 20_000


@dataclass
class ConsoleState:
    """Kept in ``app.extensions["console"]``.

    ``answers`` holds (time, HTTP status, duration in ms, duplicate) of
    this process's recent webhook answers, for the acknowledgement
    latency chart; each worker process sees only its own.
    """

    auth: ConsoleAuth
    clock: Any
    answers: deque[tuple[float, int, float, bool]] = field(
        default_factory=lambda: deque(maxlen=ANSWER_HISTORY)
    )

    def observe_answer(self, fields: Mapping[str, Any]) -> None:
        """Delivery observer: remember one webhook answer's timing."""
        self.answers.append(
            (
                float(self.clock()),
                int(fields.get("status") or 0),
                float(fields.get("duration_ms") or 0.0),
                bool(fields.get("duplicate")),
            )
        )


def console_state() -> ConsoleState:
    """Return the console state of the current app."""
    state: ConsoleState = current_app.extensions["console"]
    return state
