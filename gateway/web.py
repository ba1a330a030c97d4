"""The Flask application: the webhook route, health routes, error handling.

The webhook view follows CONTRACT.md section 1 in order, cheapest refusal
first: unknown source, method, rate limit (flask-limiter, before the
view), body size, signature over the raw bytes, parsing, deduplication,
durable storage, then the answer; handlers run afterwards in the
dispatcher thread. Views raise :class:`GatewayError`; the one error
handler here turns it into JSON.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import (
    ClientDisconnected,
    HTTPException,
    RequestEntityTooLarge,
)

from . import logs, metrics
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
from .diagnosis import explain_refusal
from .dispatch import Dispatcher
from .errors import (
    ConfigError,
    GatewayError,
    InvalidPayload,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SignatureError,
    StoreError,
    Unavailable,
    UnknownSource,
)
from .events import make_event, parse_delivery
from .lifecycle import count_secret_match, warn_expiring_secrets
from .limiter import (
    build_limiter,
    check_storage,
    limit_webhooks,
    retry_after_seconds,
    trust_proxies,
)
from .provider import ProviderHealth, provider_health
from .refusals import Refusal, RefusalLog, RefusalRecorder
from .signals import load_handlers, receiver_count
from .store import Store, open_store

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
REQUEST_ID_HEADER = "X-Request-Id"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _server_read_errors() -> tuple[type[BaseException], ...]:
    try:
        from gunicorn.http.errors import ParseException
    except ImportError:  # served by another WSGI server
        return ()
    return (ParseException,)


_BODY_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    *_server_read_errors(),
)


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
    # One byte above the largest limit: _read_body reads limit + 1 bytes to
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
    _register_error_handlers(app)
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


def get_gateway(app: Flask | None = None) -> Gateway:
    """Return the :class:`Gateway` of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    gateway: Gateway = target.extensions["gateway"]
    return gateway


def _routes(
    sources: Mapping[str, SourceConfig], limiter: Limiter, unverified_limit: str
) -> Blueprint:
    blueprint = Blueprint("gateway", __name__)

    @blueprint.route(
        "/api/webhooks/<source>", methods=_METHODS, provide_automatic_options=False
    )
    @limit_webhooks(limiter, sources, unverified_limit)
    def receive(source: str) -> tuple[Response, int]:
        return _receive(source)

    # Probes are never rate-limited and say nothing of the configuration.
    @blueprint.get("/healthz")
    @limiter.exempt
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @blueprint.get("/readyz")
    @limiter.exempt
    def readyz() -> tuple[Response, int]:
        return _readiness()

    return blueprint


def _receive(source_name: str) -> tuple[Response, int]:
    gateway = get_gateway()
    source = gateway.settings.sources.get(source_name)
    g.delivery = {"source": source_name}
    if source is None:
        raise UnknownSource()
    if request.method != "POST":
        raise MethodNotAllowed()
    if gateway.backpressure is not None:
        gateway.backpressure.check()
    body = _read_body(source.max_body_bytes)
    g.body = body
    headers = {name.lower(): value for name, value in request.headers.items()}
    now = gateway.clock()
    try:
        verification = source.scheme.verify(
            body,
            headers,
            source.keys,
            now=now,
            tolerance_seconds=source.tolerance_seconds,
        )
    except SignatureError as error:
        # The client gets only the code; the refusal log keeps the cause.
        error.detail = explain_refusal(error, source, body, headers, now=now)
        raise
    g.delivery["key_id"] = verification.key_id
    delivery = parse_delivery(
        source.scheme_name, body, request.headers.get("Content-Type"), headers
    )
    if delivery.challenge is not None:
        g.delivery["event_type"] = delivery.event_type
        return jsonify({"challenge": delivery.challenge}), 200
    event = make_event(
        source=source.name,
        delivery=delivery,
        received_at=gateway.clock(),
        headers=headers,
        signature_headers=source.scheme.signature_headers,
    )
    g.delivery.update(event_id=event.id, event_type=event.type)
    try:
        gateway.ensure_schema()
        inserted = gateway.store.insert_event(
            event, verification.key_id, payload_json=delivery.payload_json
        )
    except StoreError as err:
        raise Unavailable(detail=f"event store write failed: {err}") from err
    g.delivery["duplicate"] = not inserted
    if inserted:
        gateway.dispatcher.wake()
    answer = {"received": True, "id": event.id, "duplicate": not inserted}
    return jsonify(answer), (202 if inserted else 200)


def _read_body(max_bytes: int) -> bytes:
    """Read the raw body, refusing it once it passes ``max_bytes``.

    Decided from Content-Length when given, else by a bounded read, so an
    endless chunked body never fills memory. The raw bytes are read
    before anything could parse the body (field cases 1 and 2).
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge()
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = stream.read(min(READ_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge()
            chunks.append(chunk)
    except RequestEntityTooLarge:
        raise PayloadTooLarge() from None
    except ClientDisconnected:
        raise InvalidPayload("The body ended before its announced length.") from None
    except _BODY_READ_ERRORS as err:
        # Malformed chunked framing or a dropped connection, raised by the
        # WSGI server while the body is read: the client's fault, not ours.
        raise InvalidPayload(
            "The body could not be read.", detail=f"body read failed: {err!r}"
        ) from None
    if length is not None and total < length:
        # gunicorn hands over what arrived when the client closes early.
        raise InvalidPayload("The body ended before its announced length.")
    return b"".join(chunks)


def _readiness() -> tuple[Response, int]:
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


def _register_error_handlers(app: Flask) -> None:
    app.register_error_handler(GatewayError, _gateway_error)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _gateway_error(error: GatewayError) -> tuple[Response, int]:
    g.error_code = error.code
    g.error_message = error.public_message
    g.error_detail = error.detail
    response = jsonify({"error": error.public_message, "code": error.code})
    if isinstance(error, MethodNotAllowed):
        response.headers["Allow"] = "POST"
    if isinstance(error, Unavailable):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response, error.status


def _rate_limited(_: RateLimitExceeded) -> tuple[Response, int]:
    if g.get("delivery") is None:
        g.delivery = {"source": (request.view_args or {}).get("source")}
    response, status = _gateway_error(RateLimited())
    response.headers["Retry-After"] = str(retry_after_seconds(get_gateway().limiter))
    return response, status


def _http_error(error: HTTPException) -> tuple[Response, int]:
    if isinstance(error, RequestEntityTooLarge):
        return _gateway_error(PayloadTooLarge())
    if error.code == 405:
        return _gateway_error(MethodNotAllowed())
    if error.code == 404:
        return _gateway_error(NotFound())
    if error.code is not None and 400 <= error.code < 500:
        return _gateway_error(InvalidPayload("The request could not be read."))
    return _unexpected_error(error)


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    # A bug: logged once with its traceback; the client sees no detail.
    logger.error("unexpected error", exc_info=error)
    g.error_code = "internal_error"
    body = {
        "error": "The gateway failed unexpectedly; retry later.",
        "code": "internal_error",
    }
    return jsonify(body), 500


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
