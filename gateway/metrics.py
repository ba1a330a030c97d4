"""Prometheus metrics: what the gateway counts and the ``/metrics`` route.

Counters and histograms are fed by the two observer lists the gateway
already has: ``Gateway.delivery_observers`` (one call per answered
delivery, with its log fields) and ``Dispatcher.observers`` (one call
per handler run). Figures that live in the shared store (inbox depth,
message delivery figures of CONTRACT.md section 7) are read from it at
scrape time, so every worker reports the same values.

Under several gunicorn workers each process counts on its own; with
``PROMETHEUS_MULTIPROC_DIR`` set (``gunicorn.conf.py`` creates a fresh
directory per server start) prometheus_client's multiprocess mode adds
the workers' files together at each scrape, whichever worker answers.

Label values are bounded: a source that is not configured is counted
as ``(unknown)`` so that requests to made-up URLs cannot grow the
series without limit.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .counters import COLLECTORS
from .errors import InvalidSignature, MissingSignature, StoreError
from .limiter import is_storage_degraded
from .messages import STATUS_RANKS, delivery_figures

if TYPE_CHECKING:
    from .dispatch import HandlerOutcome
    from .store import StoredEvent
    from .web import Gateway

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN_SOURCE_LABEL = "(unknown)"
NO_CODE_LABEL = "none"
VERIFICATION_CODES = frozenset(
    {"missing_signature", "invalid_signature", "timestamp_out_of_tolerance"}
)
ACK_BUCKETS_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
DISPATCH_BUCKETS_SECONDS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)
HANDLER_BUCKETS_SECONDS = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
MESSAGE_SHARES = ("delivered", "read", "failed")

# The ``*_created`` series are left out, as multiprocess mode does anyway,
# so one worker and several expose the same names.
disable_created_metrics()  # type: ignore[no-untyped-call]


class GatewayMetrics:
    """The gateway's metrics, kept in a registry of their own.

    One instance per app, so that several apps in one process (tests)
    do not share values; outside multiprocess mode, :meth:`render`
    reports exactly this instance's counts.
    """

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.deliveries = Counter(
            "gateway_deliveries",
            "Deliveries answered, by source, HTTP status and error code.",
            ["source", "status", "code"],
            registry=registry,
        )
        self.verification_failures = Counter(
            "gateway_verification_failures",
            "Deliveries refused for their signature, by source and reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "gateway_ack_seconds",
            "Time from the request reaching the app to its answer.",
            ["source"],
            buckets=ACK_BUCKETS_SECONDS,
            registry=registry,
        )
        self.dispatch_seconds = Histogram(
            "gateway_dispatch_latency_seconds",
            "Time from receipt of an event to the first call of a handler.",
            ["handler"],
            buckets=DISPATCH_BUCKETS_SECONDS,
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "gateway_handler_duration_seconds",
            "How long one handler run took, by handler.",
            ["handler"],
            buckets=HANDLER_BUCKETS_SECONDS,
            registry=registry,
        )
        self.handler_failures = Counter(
            "gateway_handler_failures",
            "Handler runs that raised, by handler.",
            ["handler"],
            registry=registry,
        )
        self.handler_retries = Counter(
            "gateway_handler_retries",
            "Failed handler runs for which a retry was scheduled.",
            ["handler"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "gateway_dead_letters",
            "Handler runs that dead-lettered their event (retries exhausted).",
            ["handler"],
            registry=registry,
        )
        # "livemax": one degraded worker is enough to show 1; a dead
        # worker's value is dropped (gunicorn.conf.py marks it dead).
        self.limiter_degraded = Gauge(
            "gateway_ratelimit_storage_degraded",
            "1 when the rate-limit storage failed and a worker counts in memory.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.store_collector = StoreCollector(gateway)
        registry.register(self.store_collector)
        # Process-wide counters of secret use, handler breakers and
        # backpressure (counters.py) are shown alongside this app's.
        for collector in COLLECTORS:
            registry.register(collector)

    def observe_delivery(self, fields: Mapping[str, Any]) -> None:
        """Count one answered delivery from its log fields."""
        source = fields.get("source")
        if source not in self.gateway.settings.sources:
            source = UNKNOWN_SOURCE_LABEL
        code = fields.get("code") or NO_CODE_LABEL
        self.deliveries.labels(source, str(fields.get("status", "")), code).inc()
        if code in VERIFICATION_CODES:
            self.verification_failures.labels(source, code).inc()
        duration_ms = fields.get("duration_ms")
        if isinstance(duration_ms, (int, float)):
            self.ack_seconds.labels(source).observe(max(duration_ms, 0) / 1000)
        self.refresh_limiter_state()

    def observe_outcome(self, stored: StoredEvent, outcome: HandlerOutcome) -> None:
        """Record one handler run: its duration, failure, retry or dead letter.

        The dispatch latency is measured on a handler's first attempt
        only: later attempts wait for their backoff on purpose.
        """
        duration_seconds = max(outcome.duration_ms, 0.0) / 1000
        self.handler_seconds.labels(outcome.handler).observe(duration_seconds)
        if outcome.attempt == 1:
            called_at = self.gateway.clock() - duration_seconds
            received_at = stored.event.received_at.timestamp()
            latency = max(called_at - received_at, 0.0)
            self.dispatch_seconds.labels(outcome.handler).observe(latency)
        if outcome.status in ("retrying", "dead"):
            self.handler_failures.labels(outcome.handler).inc()
        if outcome.status == "retrying":
            self.handler_retries.labels(outcome.handler).inc()
        elif outcome.status == "dead":
            self.dead_letters.labels(outcome.handler).inc()

    def refresh_limiter_state(self) -> None:
        """Set the degraded flag from this worker's limiter."""
        degraded = is_storage_degraded(self.gateway.limiter)
        self.limiter_degraded.set(1 if degraded else 0)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """Return every metric and its content type.

        The Prometheus text format, or OpenMetrics when the ``accept``
        header asks for it.
        """
        encode, content_type = choose_encoder(accept or "")
        self.refresh_limiter_state()
        if not is_multiprocess():
            return encode(self.registry), content_type
        # Counters and histograms come from every worker's files; the
        # store figures are read once, here.
        registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self.store_collector)
        return encode(registry), content_type


class StoreCollector(Collector):
    """Reads the store's figures at scrape time: inbox depth, messages.

    When the store does not answer, only ``gateway_store_up 0`` is
    reported, so a scrape never fails because of the store.
    """

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def describe(self) -> list[Metric]:
        """Describe nothing up front, so registering does not query the store."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the store's figures as gauges."""
        up = GaugeMetricFamily(
            "gateway_store_up", "1 when the event store answered this scrape."
        )
        try:
            self.gateway.ensure_schema()
            pending, oldest = self.gateway.store.backlog()
            figures = delivery_figures(self.gateway.store)
        except StoreError:
            logger.warning("metrics could not read the event store", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "gateway_inbox_pending_events",
            "Stored events whose handlers have not all finished (inbox depth).",
            value=pending,
        )
        age = max(self.gateway.clock() - oldest, 0.0) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "gateway_inbox_oldest_pending_age_seconds",
            "Age of the oldest pending event; 0 when the inbox is empty.",
            value=age,
        )
        messages = GaugeMetricFamily(
            "gateway_messages",
            "Tracked outbound messages by current status.",
            labels=["status"],
        )
        for status in STATUS_RANKS:
            messages.add_metric([status], figures[status])
        yield messages
        yield GaugeMetricFamily(
            "gateway_messages_tracked",
            "Tracked outbound messages in all (every one was sent).",
            value=figures["total"],
        )
        shares = GaugeMetricFamily(
            "gateway_messages_ratio",
            "Share of tracked messages delivered (or read), read and failed.",
            labels=["status"],
        )
        for status in MESSAGE_SHARES:
            shares.add_metric([status], figures[f"{status}_ratio"])
        yield shares


def is_multiprocess() -> bool:
    """Whether prometheus_client adds up several processes' files."""
    return bool(os.environ.get(MULTIPROCESS_DIR_VARIABLE))


def install(app: Flask, gateway: Gateway) -> GatewayMetrics:
    """Create the metrics of ``gateway``, hook them in and add ``/metrics``.

    With ``settings.metrics_token`` set, the route needs
    ``Authorization: Bearer <token>`` and answers 401 otherwise.
    """
    metrics = GatewayMetrics(gateway)
    gateway.delivery_observers.append(metrics.observe_delivery)
    gateway.dispatcher.observers.append(metrics.observe_outcome)
    token = gateway.settings.metrics_token

    def serve_metrics() -> Response:
        if token is not None:
            _check_token(token)
        body, content_type = metrics.render(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    # Never rate-limited: a scraper polls from one address all day.
    gateway.limiter.exempt(serve_metrics)
    app.add_url_rule("/metrics", "metrics", serve_metrics, methods=["GET"])
    app.extensions["gateway_metrics"] = metrics
    return metrics


def _check_token(token: str) -> None:
    # The contract has no code of its own for a missing credential; the
    # signature codes are the ones a 401 carries (README, "Metrics").
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        raise MissingSignature(
            "Send the metrics token as 'Authorization: Bearer <token>'."
        )
    if not hmac.compare_digest(supplied.strip().encode(), token.encode()):
        raise InvalidSignature("The metrics token is not valid.")
