"""What the delivery lists and event pages show, for HTML and JSON alike.

The deliveries filters read from the query string, the store and
refusal-log queries behind them, and the rows (plain dicts) that both
the pages and their JSON endpoints render.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import abort, url_for

from ..dispatch import matching_handlers
from ..refusals import Refusal, RefusalLog
from ..store import StoredEvent
from ..web import get_gateway
from . import present

PAGE_SIZE = 50
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
        before = parse_key(before_text)
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


def list_events(filters: Filters, limit: int) -> list[StoredEvent]:
    """Stored events matching ``filters``, newest first, at most ``limit``."""
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


def refusal_log() -> RefusalLog:
    """The refusal log, the running one if refusals are being recorded."""
    gateway = get_gateway()
    if gateway.refusals is not None:
        return gateway.refusals.log
    return RefusalLog(gateway.store)


def refusal_list(filters: Filters, limit: int) -> list[Refusal]:
    """Refused deliveries matching ``filters``, newest first."""
    return refusal_log().list(
        source=filters.source or None,
        since=filters.since,
        until=filters.until,
        before_id=filters.before,
        limit=limit,
    )


def refusal_row(refusal: Refusal) -> dict[str, Any]:
    """One refused delivery as a row of the deliveries list."""
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


def event_row(stored: StoredEvent) -> dict[str, Any]:
    """One stored event as a row of the deliveries list."""
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


MAX_KEY = 2**63 - 1


def parse_key(text: str) -> int | None:
    """A store key from a query string: ASCII digits within 64 bits, or None."""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def event_or_404(pk: int) -> StoredEvent:
    """The stored event ``pk``; aborts with 404 when there is none."""
    if pk > MAX_KEY:
        abort(404)
    stored = get_gateway().store.get_event(pk)
    if stored is None:
        abort(404)
    return stored


def handler_rows(stored: StoredEvent) -> list[dict[str, Any]]:
    """Each handler of an event (matching now or run before) and its run."""
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


def event_version(stored: StoredEvent, attempts: int) -> str:
    """Changes whenever the event's status or number of attempts does."""
    return f"{stored.status}:{attempts}"
