"""The health probes: ``/healthz`` (the process answers) and ``/readyz``.

Readiness checks the store, the limiter storage, the dispatcher and the
backlog; the provider's health is shown but never counted. Probes are
never rate-limited and say nothing of the configuration.
"""

from __future__ import annotations

from flask import Response, jsonify

from .errors import StoreError, Unavailable
from .instance import get_gateway
from .limiter import check_storage


def liveness() -> Response:
    """Answer ``/healthz``: the process is up and serving requests."""
    return jsonify({"status": "ok"})


def readiness() -> tuple[Response, int]:
    """Answer ``/readyz``: 200 when the gateway can take deliveries, else 503."""
    gateway = get_gateway()
    checks: dict[str, str] = {}
    try:
        gateway.ensure_schema()
        gateway.store.ping()
        checks["store"] = "ok"
    except StoreError:
        checks["store"] = "unreachable"
    # A limiter storage outage degrades the limit to per-worker counting
    # but refuses no delivery, so it must not take the instance out of
    # rotation: the gateway stays ready and says it is degraded.
    checks["limiter"] = "ok" if check_storage(gateway.limiter) else "degraded"
    if gateway.settings.dispatcher_enabled:
        gateway.dispatcher.start()
        checks["dispatcher"] = "ok" if gateway.dispatcher.is_running() else "stopped"
    backlog = gateway.backpressure.state() if gateway.backpressure else None
    if backlog is not None:
        checks["backlog"] = backlog.reason or "ok"
    failing = [
        f"{part} {state}"
        for part, state in checks.items()
        if state not in ("ok", "degraded")
    ]
    if gateway.provider_health is not None:
        # Shown, never counted: the gateway still receives without it.
        checks["provider"] = gateway.provider_health.status()
    if not failing:
        return jsonify({"status": "ready", "checks": checks}), 200
    body = {
        "status": "unavailable",
        "error": f"Not ready: {', '.join(failing)}.",
        "code": Unavailable.code,
        "checks": checks,
    }
    return jsonify(body), 503
