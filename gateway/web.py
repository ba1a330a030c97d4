"""The Flask application: its factory, routes and request hooks.

:func:`create_app` wires the settings, store, dispatcher, limiter and
handlers into one app. The webhook view lives in :mod:`gateway.receive`,
the probes in :mod:`gateway.probes` and the error answers in
:mod:`gateway.answers`; the hooks here give every request an id and write
one log line per delivery (logger ``gateway.web``), recording refusals.
:class:`Gateway` and :func:`get_gateway` are importable from here too.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from flask_limiter import Limiter

from . import logs, metrics
from .answers import register_error_handlers
from .backpressure import Backpressure
from .breaker import CircuitBreaker
from .cli import cli as command_line
from .config import (
    Settings,
    SourceConfig,
    load_settings,
    secret_values,
    take_generated_secrets,
)
from .dispatch import Dispatcher
from .errors import ConfigError, StoreError
from .instance import Gateway, get_gateway
from .lifecycle import count_secret_match, warn_expiring_secrets
from .limiter import build_limiter, limit_webhooks, trust_proxies
from .probes import liveness, readiness
from .provider import provider_health
from .receive import READ_CHUNK_BYTES
from .receive import receive as receive_delivery
from .refusals import Refusal, RefusalLog, RefusalRecorder
from .signals import load_handlers, receiver_count
from .store import open_store

__all__ = [
    "READ_CHUNK_BYTES",
    "REQUEST_ID_HEADER",
    "Gateway",
    "create_app",
    "create_app_or_exit",
    "get_gateway",
]

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(
    config: Mapping[str, Any] | Settings | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> Flask:
    """Build the gateway application.

    :param config: a :class:`Settings`, or values that override the
        environment, keyed by variable name (``INTEGRATION_SECRET_KEY``...).
    :param clock: the time source in unix seconds (tests freeze it).
    :raises ConfigError: the configuration is invalid or a handler module
        cannot be imported; the message names the key or module.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    logs.configure(settings.log_level, settings.log_format)
    logs.register_secrets(secret_values(settings))
    _announce_generated_secrets(settings)
    load_handlers(settings.handler_modules)
    clock = clock or time.time

    app = Flask("gateway")
    # One byte above the largest limit: read_body reads limit + 1 bytes to
    # tell "exactly the limit" (accepted) from "over it" (413).
    app.config["MAX_CONTENT_LENGTH"] = (
        max(source.max_body_bytes for source in settings.sources.values()) + 1
    )
    # "//api//webhooks//x" is not ours: a 404 in JSON, not an HTML redirect.
    app.url_map.merge_slashes = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    trust_proxies(app, settings.trusted_proxies)
    limiter = build_limiter(app, settings)
    store = open_store(settings.database_url, pool_size=settings.db_pool_size)
    dispatcher = Dispatcher(
        store,
        max_retries=settings.max_retries,
        retry_base_seconds=settings.retry_base_seconds,
        lease_seconds=settings.lease_seconds,
        poll_interval_seconds=settings.poll_interval_seconds,
        handler_time_budget_seconds=settings.handler_time_budget_seconds,
        retention_days=settings.retention_days,
        clock=clock,
        breaker=CircuitBreaker(
            settings.breaker_failures, settings.breaker_cooldown_seconds, clock=clock
        ),
    )
    gateway = Gateway(settings, store, dispatcher, limiter, clock)
    gateway.provider_health = provider_health(settings, clock)
    gateway.refusals = RefusalRecorder(
        RefusalLog(
            store,
            max_rows=settings.refusal_max_rows,
            retention_days=settings.refusal_retention_days,
        ),
        clock=clock,
    )
    gateway.backpressure = Backpressure(
        store,
        high_water=settings.backlog_high_water,
        max_age_seconds=settings.backlog_max_age_seconds,
        clock=clock,
    )
    gateway.delivery_observers.append(count_secret_match)
    app.extensions["gateway"] = gateway
    try:
        gateway.ensure_schema()
    except StoreError:
        logger.error("event store unreachable at start-up; will retry", exc_info=True)

    blueprint = _routes(settings.sources, limiter, settings.ratelimit_unverified)
    app.register_blueprint(blueprint)
    metrics.install(app, gateway)
    if settings.console_enabled:
        # Imported here: the console's views use this module's helpers.
        from .console import register_console

        register_console(app, gateway)
    register_error_handlers(app)
    app.before_request(_before_request)
    app.after_request(_after_request)
    # The same commands as the `gateway` script, as `flask gateway ...`.
    app.cli.add_command(command_line, "gateway")

    _warn_risky_settings(settings)
    warn_expiring_secrets(settings, now=clock())
    logger.info(
        "gateway ready",
        extra={
            "env": settings.env,
            "sources": ",".join(sorted(settings.sources)),
            "store": store.kind,
            "handlers": receiver_count(),
        },
    )
    if settings.dispatcher_enabled:
        dispatcher.start()
        atexit.register(dispatcher.stop, 5.0)
    return app


def create_app_or_exit() -> Flask:
    """Build the app from the environment, or exit with one clear line.

    For servers (``app.py``): a configuration error or a handler module
    that cannot be imported prints ``gateway: configuration error: ...``
    on stderr and exits with status 3 (gunicorn then stops with "Worker
    failed to boot"), instead of a traceback per worker.
    """
    try:
        return create_app()
    except ConfigError as err:
        sys.stderr.write(f"gateway: configuration error: {err}\n")
        sys.stderr.flush()
        raise SystemExit(3) from None


def _routes(
    sources: Mapping[str, SourceConfig], limiter: Limiter, unverified_limit: str
) -> Blueprint:
    blueprint = Blueprint("gateway", __name__)

    @blueprint.route(
        "/api/webhooks/<source>", methods=_METHODS, provide_automatic_options=False
    )
    @limit_webhooks(limiter, sources, unverified_limit)
    def receive(source: str) -> tuple[Response, int]:
        return receive_delivery(source)

    # Probes are never rate-limited and say nothing of the configuration.
    @blueprint.get("/healthz")
    @limiter.exempt
    def healthz() -> Response:
        return liveness()

    @blueprint.get("/readyz")
    @limiter.exempt
    def readyz() -> tuple[Response, int]:
        return readiness()

    return blueprint


def _before_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _is_request_id(incoming) else uuid.uuid4().hex
    g.token = logs.request_id.set(g.request_id)
    gateway = get_gateway()
    if gateway.settings.dispatcher_enabled:
        gateway.dispatcher.start()


def _after_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    delivery = g.get("delivery")
    if delivery is not None:
        # The same fields on every delivery line, null when not known yet.
        fields: dict[str, Any] = {"source": None, "event_id": None, "event_type": None}
        fields.update(delivery)
        fields["status"] = response.status_code
        fields.setdefault("code", g.get("error_code"))
        started = g.get("started", time.perf_counter())
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        fields["client_ip"] = request.remote_addr
        if g.get("error_detail"):
            fields["reason"] = g.error_detail
        logger.info("delivery", extra=fields)
        if response.status_code >= 400:
            _record_refusal(fields)
        for observer in get_gateway().delivery_observers:
            try:
                observer(fields)
            except Exception:  # an observer must never break an answer
                logger.exception("delivery observer failed")
    token = g.pop("token", None)
    if token is not None:
        logs.request_id.reset(token)
    return response


def _record_refusal(fields: Mapping[str, Any]) -> None:
    """Queue the refusal of this request for the refusal log.

    Only sizes, a hash and header names are kept: never the body, a
    signature or a secret.
    """
    gateway = get_gateway()
    if gateway.refusals is None:
        return
    body = g.get("body")
    source = gateway.settings.sources.get(str(fields.get("source")))
    gateway.refusals.record(
        Refusal(
            source=str(fields.get("source") or "-"),
            at=gateway.clock(),
            status=int(fields["status"]),
            code=str(fields.get("code") or "internal_error"),
            client_ip=request.remote_addr,
            detail=g.get("error_detail") or g.get("error_message"),
            request_id=g.get("request_id"),
            body_bytes=len(body) if body is not None else request.content_length,
            body_sha256=hashlib.sha256(body).hexdigest() if body is not None else None,
            scheme=source.scheme_name if source else None,
            content_type=request.headers.get("Content-Type"),
            user_agent=request.headers.get("User-Agent"),
            header_names=",".join(
                sorted(name.lower() for name in request.headers.keys())
            ),
        )
    )


def _is_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(
        character.isalnum() or character in "-_.:" for character in value
    )


def _announce_generated_secrets(settings: Settings) -> None:
    created = {
        source: (secret, path) for source, secret, path in take_generated_secrets()
    }
    for name, source in settings.sources.items():
        if not source.generated_secret:
            continue
        if name == "integration" and not settings.config_path:
            how = "set INTEGRATION_SECRET_KEY to use your own"
        else:
            how = f"set the secrets of [sources.{name}] in GATEWAY_CONFIG"
        if name not in created:
            # Made earlier (by another worker, a restart or the CLI): say
            # where it is, never what it is.
            logger.warning(
                "using a development secret; set a real one before production",
                extra={
                    "source": name,
                    "path": f"{settings.data_dir}/dev-secret-{name}",
                },
            )
            continue
        secret, path = created[name]
        logger.warning(
            "generated a development secret; set a real one before production",
            extra={"source": name, "path": path},
        )
        # Shown once, on the terminal only (never in a log line), so the
        # developer can sign test deliveries.
        sys.stderr.write(
            f"\n  Development secret for source {name!r}: {secret}\n"
            f"  (kept in {path}; {how})\n\n"
        )
        sys.stderr.flush()


def _warn_risky_settings(settings: Settings) -> None:
    if settings.env != "production":
        logger.warning(
            "running in development mode; set GATEWAY_ENV=production to refuse"
            " start-up without real secrets"
        )
