"""Per-client-IP rate limiting with flask-limiter, and the client IP.

The client IP is ``request.remote_addr`` after Werkzeug's ``ProxyFix``
has applied ``GATEWAY_TRUSTED_PROXIES`` hops of ``X-Forwarded-For``; with
no trusted proxy the header is ignored, so a client cannot choose its own
bucket by sending one (field case 7).

Each source's limit (``rate_limit``, default ``RATELIMIT_DEFAULT``) is
counted per (client IP, source). A second, stricter bucket counts only
deliveries refused for their signature, so a flood of forgeries is cut
off long before a provider's legitimate burst would be. A source's
``allow_networks`` (provider CIDR blocks) skip the per-IP limit, never
the stricter one: a shared cloud range may hold forgers too.

When Redis storage fails, the limiter falls back to in-memory counting in
each worker and logs a warning: deliveries keep flowing (their signatures
still protect the gateway) rather than being refused for a limiter fault.
:func:`is_storage_degraded` tells readiness and metrics about it; the
limiter returns to Redis by itself once Redis answers again.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings, SourceConfig

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 0.5


def client_ip() -> str:
    """Return the client IP of the current request (after ProxyFix)."""
    return request.remote_addr or "unknown"


def trust_proxies(app: Flask, hops: int) -> None:
    """Take the client IP from ``X-Forwarded-For``, trusting ``hops`` proxies."""
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0
        )


def build_limiter(app: Flask, settings: Settings) -> Limiter:
    """Create the app's limiter on the configured storage.

    No limit applies app-wide: health, readiness and metrics are never
    limited. The webhook view declares its limits with :func:`limit_webhooks`.
    """
    options: dict[str, Any] = {}
    if settings.ratelimit_storage_uri.startswith(("redis://", "rediss://")):
        options = {
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
        }
    limiter = Limiter(
        client_ip,
        app=app,
        storage_uri=settings.ratelimit_storage_uri,
        storage_options=options,
        strategy="moving-window",
        # No X-RateLimit-* headers: providers do not read them on webhook
        # answers, and each would cost one more storage read per delivery
        # (a Redis round trip). A 429 still carries Retry-After.
        headers_enabled=False,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        key_prefix="gateway",
    )
    if settings.ratelimit_storage_uri.startswith("memory://"):
        logger.warning(
            "rate-limit storage is in memory: each worker process counts on its own",
            extra={"storage": "memory"},
        )
    else:
        _watch_storage(app, limiter)
    return limiter


def limit_webhooks(
    limiter: Limiter,
    sources: Mapping[str, SourceConfig],
    unverified_limit: str,
) -> Callable[[Any], Any]:
    """Return a decorator that applies the per-source limits to a view.

    A request for an unknown source is exempt, so it gets its 404 rather
    than a 429 (CONTRACT.md section 1, step 1 before step 2).
    """

    def source_name() -> str | None:
        view_args = request.view_args or {}
        name = view_args.get("source")
        return name if name in sources else None

    def source_limit() -> str:
        name = source_name()
        return sources[name].rate_limit if name else "1000000 per second"

    def key() -> str:
        return f"{client_ip()}|{source_name() or '-'}"

    def exempt() -> bool:
        return source_name() is None

    def exempt_or_allowed() -> bool:
        name = source_name()
        return name is None or is_allowed_network(client_ip(), sources[name])

    def refused_signature(response: Response) -> bool:
        return response.status_code == 401

    def decorate(view: Any) -> Any:
        view = limiter.limit(
            source_limit,
            key_func=key,
            exempt_when=exempt_or_allowed,
            methods=["POST"],
        )(view)
        return limiter.limit(
            unverified_limit,
            key_func=lambda: "unverified|" + key(),
            exempt_when=exempt,
            deduct_when=refused_signature,
            methods=["POST"],
        )(view)

    return decorate


def is_allowed_network(ip: str, source: SourceConfig) -> bool:
    """Whether ``ip`` lies in one of the source's ``allow_networks``."""
    if not source.allow_networks:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in source.allow_networks)


def retry_after_seconds(limiter: Limiter) -> int:
    """Seconds until the breached limit of this request frees a slot."""
    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, int(current.reset_at - time.time()) + 1)


def is_storage_degraded(limiter: Limiter) -> bool:
    """Whether the limiter has fallen back to in-memory counting."""
    return bool(getattr(limiter, "_storage_dead", False))


def _watch_storage(app: Flask, limiter: Limiter) -> None:
    """Log once when the limiter falls back to memory and when it recovers.

    flask-limiter switches storage inside the request; this hook notices
    the switch after the answer, so the warning reaches the gateway's log.
    """
    state = {"degraded": False}

    def note(response: Response) -> Response:
        degraded = is_storage_degraded(limiter)
        if degraded != state["degraded"]:
            state["degraded"] = degraded
            if degraded:
                logger.warning(
                    "rate-limit storage unreachable; counting in memory per worker"
                    " and accepting deliveries",
                    extra={"storage": "fallback-memory"},
                )
            else:
                logger.info(
                    "rate-limit storage reachable again", extra={"storage": "shared"}
                )
        return response

    app.after_request(note)


def check_storage(limiter: Limiter) -> bool:
    """Whether the limiter's storage answers now (for readiness)."""
    storage = getattr(limiter, "_storage", None)
    if storage is None:
        return False
    try:
        return bool(storage.check())
    except Exception:  # any driver error means "not reachable"
        logger.debug("rate-limit storage check failed", exc_info=True)
        return False
