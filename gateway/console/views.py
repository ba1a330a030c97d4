"""The console's pages: overview, deliveries, events, dead letters, handlers.

Every page is rendered on the server and readable without JavaScript;
the small script only refreshes lists (:mod:`.api`) and waits for
replays (:mod:`.replays`) to finish. :func:`console_blueprint` puts
every route behind the guard of :mod:`.guard` (issue 9).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import Blueprint, abort, request, url_for
from flask_limiter import Limiter

from ..dispatch import handlers_by_pattern
from ..messages import delivery_figures
from ..store import EVENT_STATUSES
from ..web import get_gateway
from . import charts, present
from .api import deliveries_json, event_json
from .guard import protect
from .listing import (
    FILTER_LABELS,
    MAX_KEY,
    PAGE_SIZE,
    STATUS_LABELS,
    Filters,
    event_or_404,
    event_row,
    event_version,
    handler_rows,
    list_events,
    refusal_list,
    refusal_log,
    refusal_row,
)
from .render import render_page
from .replays import replay_dead_letters_page, replay_event_page
from .state import console_state

DEAD_LETTER_PAGE = 500
CHART_MINUTES = 60
HANDLER_WINDOW_SECONDS = 3600


def console_blueprint(limiter: Limiter) -> Blueprint:
    """Build the console's blueprint, mounted at ``/console``.

    :param limiter: the app's limiter; sign-in attempts are limited per
        client IP with it.
    """
    blueprint = Blueprint(
        "console",
        __name__,
        url_prefix="/console",
        template_folder="templates",
        static_folder="static",
    )
    protect(blueprint, limiter)
    rules: list[tuple[str, Any, list[str]]] = [
        ("/", overview, ["GET"]),
        ("/deliveries", deliveries, ["GET"]),
        ("/api/deliveries", deliveries_json, ["GET"]),
        ("/events/<int:pk>", event_page, ["GET"]),
        ("/api/events/<int:pk>", event_json, ["GET"]),
        ("/refusals/<int:refusal_id>", refusal_page, ["GET"]),
        ("/events/<int:pk>/replay", replay_event_page, ["GET", "POST"]),
        ("/dead-letters", dead_letters, ["GET"]),
        ("/dead-letters/replay", replay_dead_letters_page, ["GET", "POST"]),
        ("/handlers", handlers_page, ["GET"]),
    ]
    for rule, view, methods in rules:
        blueprint.add_url_rule(rule, view_func=view, methods=methods)
    return blueprint


def overview() -> str:
    """Charts of the last hour and the store's totals."""
    gateway = get_gateway()
    store = gateway.store
    now = gateway.clock()
    first = int(now // 60) - CHART_MINUTES + 1
    minutes = list(range(first, first + CHART_MINUTES))
    since = first * 60.0
    series: dict[str, list[int]] = {
        status: [0] * CHART_MINUTES for status in EVENT_STATUSES
    }
    for minute, status, count in store.events_per_minute(since=since):
        if status in series and first <= minute < first + CHART_MINUTES:
            series[status][minute - first] += count
    deliveries_chart = charts.stacked_minutes(
        "Stored deliveries per minute",
        "Events received in the last hour, by their current outcome.",
        minutes,
        {"done": series["done"], "pending": series["pending"], "dead": series["dead"]},
        STATUS_LABELS,
    )
    acks: dict[int, list[float]] = defaultdict(list)
    for at, _, duration_ms, _ in list(console_state().answers):
        if at >= since:
            acks[int(at // 60)].append(duration_ms)
    ack_chart = _latency_chart(
        "Acknowledgement latency",
        "Time from request to answer, this worker process only.",
        minutes,
        acks,
    )
    waits: dict[int, list[float]] = defaultdict(list)
    for attempt in store.recent_attempts(since=since):
        if attempt.attempt == 1:
            waits[int(attempt.at // 60)].append(attempt.seconds_since_receipt * 1000)
    dispatch_chart = _latency_chart(
        "Dispatch latency",
        "Time from receipt to the end of each handler's first try.",
        minutes,
        waits,
    )
    figures = delivery_figures(store)
    total = figures["total"]
    message_items = [
        (
            status,
            status,
            figures[status],
            f"{int(figures[status])}"
            + (f" ({figures[status] / total:.0%})" if total else ""),
        )
        for status in ("sent", "delivered", "read", "failed")
    ]
    messages_chart = charts.horizontal_bars(
        "Messages by current status",
        "Messages sent through the provider, by their latest reported status.",
        message_items,
    )
    counts = store.counts_by_status()
    backlog, oldest = store.backlog()
    return render_page(
        "overview.html",
        charts=[deliveries_chart, dispatch_chart, ack_chart, messages_chart],
        counts={status: counts.get(status, 0) for status in EVENT_STATUSES},
        backlog=backlog,
        oldest=present.utc_text(oldest),
        dead_total=sum(store.dead_letter_counts().values()),
        figures=figures,
    )


def deliveries() -> str:
    """Stored deliveries, newest first, filtered, in keyset pages.

    With the status filter ``refused``, lists the refusal log instead:
    deliveries answered with an error, never stored as events.
    """
    filters = Filters.from_args(request.args)
    if filters.status == "refused":
        return _refusals(filters)
    page = list_events(filters, PAGE_SIZE + 1)
    older = None
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        older = filters.link(before=page[-1].pk)
    return render_page(
        "deliveries.html",
        filters=filters,
        rows=[event_row(stored) for stored in page],
        older=older,
        newest=filters.link(before=None) if filters.before else None,
        sources=sorted(get_gateway().settings.sources),
        statuses=FILTER_LABELS,
        live_url=url_for("console.deliveries_json") + filters.query_string(),
    )


def refusal_page(refusal_id: int) -> str:
    """One refused delivery: its reason and what was kept of the request.

    The reason is for operators only (the client got just the code); the
    console shows it because every page is behind the operator's
    credentials. The body, signatures and secrets were never kept.
    """
    refusal = refusal_log().get(refusal_id) if refusal_id <= MAX_KEY else None
    if refusal is None:
        abort(404)
    names = [name for name in (refusal.header_names or "").split(",") if name]
    return render_page(
        "refusal.html",
        refusal=refusal,
        row=refusal_row(refusal),
        header_names=names,
        back=url_for("console.deliveries", status="refused"),
    )


def event_page(pk: int) -> str:
    """One event: headers, payload, and each handler's runs and tries."""
    stored = event_or_404(pk)
    store = get_gateway().store
    attempts = store.attempts(pk)
    return render_page(
        "event.html",
        stored=stored,
        row=event_row(stored),
        headers=present.masked_headers(stored.event.headers),
        payload=present.pretty_json(present.masked_payload(stored.event.payload)),
        handlers=handler_rows(stored),
        attempts=[
            {
                "handler": attempt.handler,
                "attempt": attempt.attempt,
                "status": attempt.status,
                "error": attempt.error,
                "duration": present.milliseconds(attempt.duration_ms),
                "at": present.utc_text(attempt.at),
                "iso": present.iso_text(attempt.at),
            }
            for attempt in attempts
        ],
        status_url=url_for("console.event_json", pk=pk),
        version=event_version(stored, len(attempts)),
    )


def dead_letters() -> str:
    """Every dead (event, handler) pair, oldest first, with bulk replay."""
    store = get_gateway().store
    counts = store.dead_letter_counts()
    letters = store.dead_letters(limit=DEAD_LETTER_PAGE)
    return render_page(
        "dead_letters.html",
        letters=[
            {
                "pk": letter.pk,
                "source": letter.source,
                "event_id": letter.event_id,
                "type": letter.type,
                "handler": letter.handler,
                "attempts": letter.attempts,
                "error": letter.last_error,
                "at": present.utc_text(letter.updated_at),
                "iso": present.iso_text(letter.updated_at),
            }
            for letter in letters
        ],
        counts=dict(sorted(counts.items())),
        total=sum(counts.values()),
    )


def handlers_page() -> str:
    """Loaded handlers per pattern, with the last hour's outcomes."""
    gateway = get_gateway()
    since = gateway.clock() - HANDLER_WINDOW_SECONDS
    tries: dict[str, list[Any]] = defaultdict(list)
    for attempt in gateway.store.recent_attempts(since=since):
        tries[attempt.handler].append(attempt)
    dead = gateway.store.dead_letter_counts()
    patterns = []
    for pattern, names in handlers_by_pattern().items():
        rows = []
        for name in names:
            recent = tries.get(name, [])
            durations = [attempt.duration_ms for attempt in recent]
            successes = sum(1 for attempt in recent if attempt.status == "ok")
            rows.append(
                {
                    "name": name,
                    "tries": len(recent),
                    "success": f"{successes / len(recent):.0%}" if recent else "–",
                    "p50": present.milliseconds(present.percentile(durations, 0.5)),
                    "p95": present.milliseconds(present.percentile(durations, 0.95)),
                    "dead": dead.get(name, 0),
                }
            )
        patterns.append({"pattern": pattern, "handlers": rows})
    return render_page("handlers.html", patterns=patterns)


def _refusals(filters: Filters) -> str:
    page = refusal_list(filters, PAGE_SIZE + 1)
    older = None
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        older = filters.link(before=page[-1].id)
    return render_page(
        "deliveries.html",
        filters=filters,
        refusals=[refusal_row(item) for item in page],
        rows=[],
        older=older,
        newest=filters.link(before=None) if filters.before else None,
        sources=sorted(get_gateway().settings.sources),
        statuses=FILTER_LABELS,
        live_url=None,
    )


def _latency_chart(
    title: str, blurb: str, minutes: list[int], samples: dict[int, list[float]]
) -> charts.Chart:
    """A chart of the median and 95th percentile per minute, in ms."""
    return charts.minute_lines(
        title,
        blurb,
        minutes,
        {
            "p50": [present.percentile(samples[minute], 0.5) for minute in minutes],
            "p95": [present.percentile(samples[minute], 0.95) for minute in minutes],
        },
        {"p50": "median", "p95": "95th percentile"},
        "ms",
    )
