"""The console's pages: overview, deliveries, events, dead letters, handlers.

Every page is rendered on the server and readable without JavaScript;
the small script only refreshes lists and waits for replays to finish.
Each request passes :func:`_guard` first: no page, JSON endpoint or form
answers without valid credentials, and every POST must carry the
session's CSRF token and come from this origin (issue 9).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from ..dispatch import handlers_by_pattern, matching_handlers
from ..errors import StoreError
from ..limiter import client_ip
from ..messages import delivery_figures
from ..refusals import Refusal, RefusalLog
from ..replay import replay_dead_letters, replay_event
from ..store import EVENT_STATUSES, StoredEvent
from ..web import get_gateway
from . import charts, present
from .auth import (
    COOKIE_NAME,
    COOKIE_PATH,
    CSRF_FIELD,
    SESSION_SECONDS,
    ConsoleSession,
)
from .state import ConsoleState, console_state

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
DEAD_LETTER_PAGE = 500
CHART_MINUTES = 60
HANDLER_WINDOW_SECONDS = 3600
LOGIN_LIMIT = "10 per minute"
REASON_CHARS = 160  # of a refusal's reason in the list
STATUS_LABELS = {
    "pending": "accepted, pending",
    "done": "done",
    "dead": "dead-lettered",
}
# The deliveries page's status filter: the stored statuses, plus events
# that received repeats and deliveries refused before being stored.
FILTER_LABELS = {
    "pending": "accepted, pending",
    "done": "done",
    "duplicate": "received duplicates",
    "dead": "dead-lettered",
    "refused": "refused, with reason",
}
_PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self';"
        " img-src 'self'; connect-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


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
    blueprint.before_request(_guard)
    blueprint.after_request(_finish)
    blueprint.register_error_handler(StoreError, _store_error)
    blueprint.register_error_handler(RateLimitExceeded, _rate_limited)
    blueprint.register_error_handler(HTTPException, _http_error)
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
        ("/logout", logout, ["POST"]),
    ]
    for rule, view, methods in rules:
        blueprint.add_url_rule(rule, view_func=view, methods=methods)
    limited_login = limiter.limit(LOGIN_LIMIT, key_func=client_ip, methods=["POST"])(
        login
    )
    blueprint.add_url_rule("/login", view_func=limited_login, methods=["GET", "POST"])
    return blueprint


# -- pages -------------------------------------------------------------------


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
    ack_chart = charts.minute_lines(
        "Acknowledgement latency",
        "Time from request to answer, this worker process only.",
        minutes,
        {
            "p50": [present.percentile(acks[minute], 0.5) for minute in minutes],
            "p95": [present.percentile(acks[minute], 0.95) for minute in minutes],
        },
        {"p50": "median", "p95": "95th percentile"},
        "ms",
    )
    waits: dict[int, list[float]] = defaultdict(list)
    for attempt in store.recent_attempts(since=since):
        if attempt.attempt == 1:
            waits[int(attempt.at // 60)].append(attempt.seconds_since_receipt * 1000)
    dispatch_chart = charts.minute_lines(
        "Dispatch latency",
        "Time from receipt to the end of each handler's first try.",
        minutes,
        {
            "p50": [present.percentile(waits[minute], 0.5) for minute in minutes],
            "p95": [present.percentile(waits[minute], 0.95) for minute in minutes],
        },
        {"p50": "median", "p95": "95th percentile"},
        "ms",
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
    return _page(
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
    page = _list(filters, PAGE_SIZE + 1)
    older = None
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        older = filters.link(before=page[-1].pk)
    return _page(
        "deliveries.html",
        filters=filters,
        rows=[_row(stored) for stored in page],
        older=older,
        newest=filters.link(before=None) if filters.before else None,
        sources=sorted(get_gateway().settings.sources),
        statuses=FILTER_LABELS,
        live_url=url_for("console.deliveries_json") + filters.query_string(),
    )


def deliveries_json() -> Response:
    """The first page of deliveries for the current filters, as JSON.

    Refused deliveries come under ``refusals``; stored ones under
    ``events``.
    """
    filters = replace(Filters.from_args(request.args), before=None)
    if filters.status == "refused":
        found = _refusal_list(filters, PAGE_SIZE)
        return jsonify(
            {
                "refusals": [_refusal_row(item) for item in found],
                "errors": filters.errors,
            }
        )
    rows = [_row(stored) for stored in _list(filters, PAGE_SIZE)]
    return jsonify({"events": rows, "errors": filters.errors})


def refusal_page(refusal_id: int) -> str:
    """One refused delivery: its reason and what was kept of the request.

    The reason is for operators only (the client got just the code); the
    console shows it because every page is behind the operator's
    credentials. The body, signatures and secrets were never kept.
    """
    refusal = _refusal_log().get(refusal_id)
    if refusal is None:
        abort(404)
    names = [name for name in (refusal.header_names or "").split(",") if name]
    return _page(
        "refusal.html",
        refusal=refusal,
        row=_refusal_row(refusal),
        header_names=names,
        back=url_for("console.deliveries", status="refused"),
    )


def event_page(pk: int) -> str:
    """One event: headers, payload, and each handler's runs and tries."""
    stored = _event_or_404(pk)
    store = get_gateway().store
    attempts = store.attempts(pk)
    return _page(
        "event.html",
        stored=stored,
        row=_row(stored),
        headers=present.masked_headers(stored.event.headers),
        payload=present.pretty_json(present.masked_payload(stored.event.payload)),
        handlers=_handler_rows(stored),
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
        version=_version(stored, len(attempts)),
    )


def event_json(pk: int) -> Response:
    """An event's status and handler outcomes, for the page to poll."""
    stored = _event_or_404(pk)
    attempts = get_gateway().store.attempts(pk)
    return jsonify(
        {
            "status": stored.status,
            "handlers": {row["name"]: row["status"] for row in _handler_rows(stored)},
            "version": _version(stored, len(attempts)),
        }
    )


def replay_event_page(pk: int) -> BaseResponse | str:
    """Confirm (GET) and then queue (POST) a replay of one event."""
    stored = _event_or_404(pk)
    rows = {row["name"]: row for row in _handler_rows(stored)}
    values = request.form if request.method == "POST" else request.args
    chosen = values.get("handler")
    if chosen:
        if chosen not in rows:
            abort(404)
        names = [chosen]
        again = rows[chosen]["status"] == "ok"
        what = f"run handler {chosen} again" if again else f"retry handler {chosen}"
    else:
        names = [name for name, row in rows.items() if row["failed"]]
        again = False
        what = "retry every failed handler (" + ", ".join(names) + ")"
        if not names:
            return _page(
                "confirm.html",
                title="Nothing to replay",
                question="No handler of this event has failed.",
                back=url_for("console.event_page", pk=pk),
                form=None,
            )
    if request.method == "GET":
        return _page(
            "confirm.html",
            title="Replay this event?",
            question=(
                f"This will {what} for event {stored.event.id} "
                f"({stored.event.source}, {stored.event.type})."
            ),
            back=url_for("console.event_page", pk=pk),
            form={
                "action": url_for("console.replay_event_page", pk=pk),
                "fields": {"handler": chosen} if chosen else {},
                "label": "Replay now",
            },
        )
    gateway = get_gateway()
    queued = replay_event(
        gateway.store,
        pk,
        handlers=names,
        include_succeeded=again,
        now=gateway.clock(),
    )
    gateway.dispatcher.wake()
    logger.info(
        "console replay",
        extra={
            "event_id": stored.event.id,
            "source": stored.event.source,
            "handler": ",".join(names),
            "queued": queued,
            "client_ip": client_ip(),
        },
    )
    _notice(
        f"Replay queued: {', '.join(names)}. The outcome appears below once the"
        " handler has run."
        if queued
        else "The event could not be queued; it may have been deleted."
    )
    return redirect(url_for("console.event_page", pk=pk), code=303)


def dead_letters() -> str:
    """Every dead (event, handler) pair, oldest first, with bulk replay."""
    store = get_gateway().store
    counts = store.dead_letter_counts()
    letters = store.dead_letters(limit=DEAD_LETTER_PAGE)
    return _page(
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


def replay_dead_letters_page() -> BaseResponse | str:
    """Confirm (GET) and then queue (POST) a replay of the dead letters."""
    store = get_gateway().store
    counts = store.dead_letter_counts()
    values = request.form if request.method == "POST" else request.args
    handler = values.get("handler") or None
    if handler is not None and handler not in counts:
        abort(404)
    count = counts.get(handler, 0) if handler else sum(counts.values())
    if request.method == "GET":
        scope = f"of handler {handler}" if handler else "of every handler"
        return _page(
            "confirm.html",
            title="Replay dead letters?",
            question=(
                f"This will give the {count} dead letter(s) {scope} fresh retries."
            ),
            back=url_for("console.dead_letters"),
            form={
                "action": url_for("console.replay_dead_letters_page"),
                "fields": {"handler": handler} if handler else {},
                "label": "Replay now",
            },
        )
    gateway = get_gateway()
    queued = replay_dead_letters(
        gateway.store, handlers=[handler] if handler else None, now=gateway.clock()
    )
    gateway.dispatcher.wake()
    logger.info(
        "console dead-letter replay",
        extra={"handler": handler or "*", "queued": queued, "client_ip": client_ip()},
    )
    _notice(f"Replay queued for {queued} event(s); their outcomes follow shortly.")
    return redirect(url_for("console.dead_letters"), code=303)


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
    return _page("handlers.html", patterns=patterns)


def login() -> BaseResponse | str | tuple[str, int]:
    """The sign-in form for the bearer token; sets the session cookie."""
    auth = console_state().auth
    target = _safe_next(request.values.get("next"))
    if not auth.uses_token:
        return redirect(target, code=303)
    if request.method == "GET":
        if g.console_signed_in:
            return redirect(target, code=303)
        return _page("login.html", next=target, error=None)
    if not auth.check_token(request.form.get("token", "")):
        logger.warning("console sign-in refused", extra={"client_ip": client_ip()})
        return _page("login.html", next=target, error="This token is not valid."), 401
    # A new session, with a new CSRF token, so nothing chosen before the
    # sign-in carries over.
    g.console_session = ConsoleSession(signed_in=True)
    g.console_cookie = True
    logger.info("console sign-in", extra={"client_ip": client_ip()})
    return redirect(target, code=303)


def logout() -> BaseResponse:
    """End the cookie session (basic auth ends when the browser forgets it)."""
    g.console_session = ConsoleSession(signed_in=False)
    return redirect(url_for("console.login"), code=303)


# -- filters -------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The deliveries page's filters, read from the query string."""

    source: str = ""
    type: str = ""
    status: str = ""
    since_text: str = ""
    until_text: str = ""
    since: float | None = None
    until: float | None = None
    before: int | None = None
    errors: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        """Read filters; a bad value is ignored and explained in ``errors``."""
        errors: list[str] = []
        source = args.get("source", "").strip()
        if source and source not in get_gateway().settings.sources:
            errors.append(f"There is no source named {source!r}.")
            source = ""
        status = args.get("status", "").strip()
        if status and status not in FILTER_LABELS:
            errors.append(f"There is no status {status!r}.")
            status = ""
        type_ = args.get("type", "").strip()[:200]
        if type_ and status == "refused":
            errors.append(
                "A refused delivery has no stored type; the type filter was ignored."
            )
            type_ = ""
        times: dict[str, float | None] = {}
        texts: dict[str, str] = {}
        for name in ("since", "until"):
            texts[name] = args.get(name, "").strip()[:40]
            try:
                times[name] = present.parse_form_time(texts[name])
            except ValueError:
                errors.append(
                    f"'{name}' must be a date and time such as 2026-01-31T09:00."
                )
                times[name], texts[name] = None, ""
        before_text = args.get("before", "").strip()
        before = int(before_text) if before_text.isdigit() else None
        return cls(
            source=source,
            type=type_,
            status=status,
            since_text=texts["since"],
            until_text=texts["until"],
            since=times["since"],
            until=times["until"],
            before=before,
            errors=tuple(errors),
        )

    def query_string(self, **changes: Any) -> str:
        """The filters as ``?a=b``, with ``changes`` applied; empty if none."""
        values = {
            "source": self.source,
            "type": self.type,
            "status": self.status,
            "since": self.since_text,
            "until": self.until_text,
            "before": self.before,
        }
        values.update(changes)
        kept = {key: value for key, value in values.items() if value not in ("", None)}
        return "?" + urlencode(kept) if kept else ""

    def link(self, **changes: Any) -> str:
        """The deliveries page's URL with these filters and ``changes``."""
        return url_for("console.deliveries") + self.query_string(**changes)

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list."""
        return bool(
            self.source
            or self.type
            or self.status
            or self.since_text
            or self.until_text
        )


# -- request guard and helpers --------------------------------------------


def _guard() -> BaseResponse | tuple[str, int] | None:
    state = console_state()
    session = state.auth.load(request.cookies.get(COOKIE_NAME))
    g.console_session = session
    g.console_signed_in = session.signed_in or state.auth.check_authorization(
        request.headers.get("Authorization")
    )
    public = request.endpoint in _PUBLIC_ENDPOINTS
    g.console_cookie = g.console_signed_in or request.endpoint == "console.login"
    if not public and not g.console_signed_in:
        return _challenge(state)
    if request.method == "POST" and not _is_genuine_form(state, session):
        logger.warning(
            "console form refused: no valid CSRF token",
            extra={"client_ip": client_ip(), "path": request.path},
        )
        return _error_page(
            403,
            "Form refused",
            "This form was not sent from a console page. Reload the page and try"
            " again.",
        )
    return None


def _is_genuine_form(state: ConsoleState, session: ConsoleSession) -> bool:
    # A browser names the page a form came from; another site is refused
    # even before the token is checked.
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        expected = urlsplit(request.host_url)
        sent = urlsplit(origin)
        if (sent.scheme, sent.netloc) != (expected.scheme, expected.netloc):
            return False
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    return state.auth.check_csrf(session, request.form.get(CSRF_FIELD))


def _challenge(state: ConsoleState) -> BaseResponse | tuple[str, int]:
    if state.auth.uses_token and not request.path.startswith("/console/api/"):
        if not state.auth.uses_basic:
            return redirect(
                url_for("console.login", next=request.full_path.rstrip("?")),
                code=303,
            )
    response = current_app.make_response(
        _error_page(
            401,
            "Sign-in required",
            "The console needs the operator's credentials.",
            login=state.auth.uses_token,
        )
    )
    if state.auth.uses_basic:
        response.headers["WWW-Authenticate"] = (
            'Basic realm="Gateway console", charset="UTF-8"'
        )
    return response


def _finish(response: Response) -> Response:
    session: ConsoleSession | None = g.get("console_session")
    if session is not None and session.changed and g.get("console_cookie"):
        response.set_cookie(
            COOKIE_NAME,
            console_state().auth.dump(session),
            max_age=SESSION_SECONDS,
            path=COOKIE_PATH,
            secure=console_state().auth.secure_cookie,
            httponly=True,
            samesite="Strict",
        )
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _page(template: str, **context: Any) -> str:
    session: ConsoleSession = g.console_session
    notice = session.notice
    if notice:
        session.notice = None
        session.changed = True
    return render_template(
        f"console/{template}",
        csrf_token=session.csrf,
        csrf_field=CSRF_FIELD,
        notice=notice,
        uses_token=console_state().auth.uses_token,
        **context,
    )


def _notice(text: str) -> None:
    session: ConsoleSession = g.console_session
    session.notice = text
    session.changed = True


def _error_page(
    status: int, title: str, message: str, *, login: bool = False
) -> tuple[str, int]:
    return (
        render_template(
            "console/error.html",
            title=title,
            message=message,
            login=login,
            csrf_token="",
            csrf_field=CSRF_FIELD,
            notice=None,
            uses_token=False,
        ),
        status,
    )


def _store_error(error: StoreError) -> tuple[str, int]:
    logger.error("console could not read the event store", exc_info=error)
    return _error_page(
        503, "Store unavailable", "The event store cannot be reached; retry shortly."
    )


def _rate_limited(_: RateLimitExceeded) -> tuple[str, int]:
    return _error_page(
        429, "Too many attempts", "Too many sign-in attempts; wait a minute."
    )


def _http_error(error: HTTPException) -> tuple[str, int]:
    status = error.code or 500
    if status == 404:
        return _error_page(404, "Not found", "There is nothing at this address.")
    if status == 405:
        return _error_page(405, "Not allowed", "This address does not take that.")
    return _error_page(status, "Request refused", "The request could not be read.")


def _safe_next(target: str | None) -> str:
    # Only a path inside the console, so the sign-in form is no open redirect.
    if target and target.startswith("/console") and not target.startswith("//"):
        if "\\" not in target and "//" not in target:
            return target
    return url_for("console.overview")


def _list(filters: Filters, limit: int) -> list[StoredEvent]:
    duplicated = filters.status == "duplicate"
    return get_gateway().store.list_events(
        source=filters.source or None,
        type_prefix=filters.type or None,
        status=None if duplicated else filters.status or None,
        since=filters.since,
        until=filters.until,
        before_pk=filters.before,
        limit=limit,
        duplicated=duplicated,
    )


def _refusals(filters: Filters) -> str:
    page = _refusal_list(filters, PAGE_SIZE + 1)
    older = None
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        older = filters.link(before=page[-1].id)
    return _page(
        "deliveries.html",
        filters=filters,
        refusals=[_refusal_row(item) for item in page],
        rows=[],
        older=older,
        newest=filters.link(before=None) if filters.before else None,
        sources=sorted(get_gateway().settings.sources),
        statuses=FILTER_LABELS,
        live_url=None,
    )


def _refusal_log() -> RefusalLog:
    gateway = get_gateway()
    if gateway.refusals is not None:
        return gateway.refusals.log
    return RefusalLog(gateway.store)


def _refusal_list(filters: Filters, limit: int) -> list[Refusal]:
    return _refusal_log().list(
        source=filters.source or None,
        since=filters.since,
        until=filters.until,
        before_id=filters.before,
        limit=limit,
    )


def _refusal_row(refusal: Refusal) -> dict[str, Any]:
    return {
        "id": refusal.id,
        "url": url_for("console.refusal_page", refusal_id=refusal.id),
        "at": present.utc_text(refusal.at),
        "iso": present.iso_text(refusal.at),
        "source": refusal.source,
        "client_ip": refusal.client_ip or "",
        "status": refusal.status,
        "code": refusal.code,
        "reason": present.shorten(refusal.detail or "", REASON_CHARS),
        "request_id": refusal.request_id or "",
        "body": present.body_summary(refusal.body_bytes, refusal.body_sha256),
    }


def _row(stored: StoredEvent) -> dict[str, Any]:
    event = stored.event
    return {
        "pk": stored.pk,
        "url": url_for("console.event_page", pk=stored.pk),
        "received_at": present.utc_text(event.received_at),
        "iso": present.iso_text(event.received_at),
        "source": event.source,
        "type": event.type,
        "event_id": event.id,
        "status": stored.status,
        "status_label": STATUS_LABELS.get(stored.status, stored.status),
        "duplicates": stored.duplicates,
        "last_duplicate_at": present.utc_text(stored.last_duplicate_at),
        "last_duplicate_iso": present.iso_text(stored.last_duplicate_at),
    }


def _event_or_404(pk: int) -> StoredEvent:
    stored = get_gateway().store.get_event(pk)
    if stored is None:
        abort(404)
    return stored


def _handler_rows(stored: StoredEvent) -> list[dict[str, Any]]:
    runs = get_gateway().store.handler_runs(stored.pk)
    names = [
        binding.name
        for binding in matching_handlers(stored.event.source, stored.event.type)
    ]
    names += sorted(name for name in runs if name not in names)
    rows = []
    for name in names:
        run = runs.get(name)
        status = run.status if run else "not run"
        rows.append(
            {
                "name": name,
                "status": status,
                "attempts": run.attempts if run else 0,
                "error": run.last_error if run else None,
                "duration": present.milliseconds(run.duration_ms if run else None),
                "next": present.utc_text(run.next_attempt_at if run else None),
                "failed": status in ("dead", "retrying"),
            }
        )
    return rows


def _version(stored: StoredEvent, attempts: int) -> str:
    return f"{stored.status}:{attempts}"
