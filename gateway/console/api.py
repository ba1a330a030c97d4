"""The console's JSON endpoints, polled by its script to refresh pages.

They answer with the same rows the pages render (see
:mod:`.listing`) and sit behind the same guard as every page.
"""

from __future__ import annotations

from dataclasses import replace

from flask import Response, jsonify, request

from ..web import get_gateway
from .listing import (
    PAGE_SIZE,
    Filters,
    event_or_404,
    event_row,
    event_version,
    handler_rows,
    list_events,
    refusal_list,
    refusal_row,
)


def deliveries_json() -> Response:
    """The first page of deliveries for the current filters, as JSON.

    Refused deliveries come under ``refusals``; stored ones under
    ``events``.
    """
    filters = replace(Filters.from_args(request.args), before=None)
    if filters.status == "refused":
        found = refusal_list(filters, PAGE_SIZE)
        return jsonify(
            {
                "refusals": [refusal_row(item) for item in found],
                "errors": filters.errors,
            }
        )
    rows = [event_row(stored) for stored in list_events(filters, PAGE_SIZE)]
    return jsonify({"events": rows, "errors": filters.errors})


def event_json(pk: int) -> Response:
    """An event's status and handler outcomes, for the page to poll."""
    stored = event_or_404(pk)
    attempts = get_gateway().store.attempts(pk)
    return jsonify(
        {
            "status": stored.status,
            "handlers": {row["name"]: row["status"] for row in handler_rows(stored)},
            "version": event_version(stored, len(attempts)),
        }
    )
