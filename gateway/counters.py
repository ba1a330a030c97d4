"""Prometheus counters for secret use, handler health and backpressure.

They are process-wide (in ``prometheus_client``'s default registry) and
``metrics.py`` adds them to every app's ``/metrics``; in multiprocess
mode the workers' values are added up like the others. Several apps in
one process (tests) share them. Label values are bounded by the
configuration: sources, key ids and loaded handler names only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SECRET_MATCHES = Counter(
    "gateway_secret_matches_total",
    "Deliveries whose signature matched, by source and the secret's key id.",
    ["source", "key_id"],
)
HANDLER_PAUSED_EVENTS = Counter(
    "gateway_handler_paused_events_total",
    "Events a handler left waiting because its circuit breaker was open.",
    ["handler"],
)
HANDLER_BREAKER_OPENED = Counter(
    "gateway_handler_breaker_opened_total",
    "Times a handler's circuit breaker opened (paused the handler).",
    ["handler"],
)
HANDLER_BREAKER_OPEN = Gauge(
    "gateway_handler_breaker_open",
    "1 while a handler is paused by its circuit breaker in this process.",
    ["handler"],
    multiprocess_mode="livemax",
)
HANDLER_OVER_BUDGET = Counter(
    "gateway_handler_over_budget_total",
    "Handler runs that took longer than the handler time budget.",
    ["handler"],
)
BACKPRESSURE_REFUSALS = Counter(
    "gateway_backpressure_refusals_total",
    "Deliveries refused with 503 because the backlog passed its mark.",
    ["reason"],
)
REFUSALS_UNRECORDED = Counter(
    "gateway_refusals_unrecorded_total",
    "Refused deliveries not written to the refusal log (throttled or full).",
    ["reason"],
)
COLLECTORS = (
    SECRET_MATCHES,
    HANDLER_PAUSED_EVENTS,
    HANDLER_BREAKER_OPENED,
    HANDLER_BREAKER_OPEN,
    HANDLER_OVER_BUDGET,
    BACKPRESSURE_REFUSALS,
    REFUSALS_UNRECORDED,
)
