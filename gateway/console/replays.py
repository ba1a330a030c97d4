"""The console's replay forms: confirm with GET, queue the replay with POST.

One event's failed (or chosen) handlers, or every dead letter of one
handler or of all. A replay is queued in the store and the dispatcher is
woken; the outcome shows on the event or dead-letter page once it runs.
"""

from __future__ import annotations

import logging

from flask import abort, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..limiter import client_ip
from ..replay import replay_dead_letters, replay_event
from ..web import get_gateway
from .listing import event_or_404, handler_rows
from .render import add_notice, render_page

logger = logging.getLogger(__name__)


def replay_event_page(pk: int) -> BaseResponse | str:
    """Confirm (GET) and then queue (POST) a replay of one event."""
    stored = event_or_404(pk)
    rows = {row["name"]: row for row in handler_rows(stored)}
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
            return render_page(
                "confirm.html",
                title="Nothing to replay",
                question="No handler of this event has failed.",
                back=url_for("console.event_page", pk=pk),
                form=None,
            )
    if request.method == "GET":
        return render_page(
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
    add_notice(
        f"Replay queued: {', '.join(names)}. The outcome appears below once the"
        " handler has run."
        if queued
        else "The event could not be queued; it may have been deleted."
    )
    return redirect(url_for("console.event_page", pk=pk), code=303)


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
        return render_page(
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
    add_notice(f"Replay queued for {queued} event(s); their outcomes follow shortly.")
    return redirect(url_for("console.dead_letters"), code=303)
