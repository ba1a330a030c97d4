"""Secret lifecycle: expiry warnings and which secret each delivery used.

A source may hold several secrets, each with a key id and an optional
``not_after`` date; a secret past its date stops matching (see
``schemes.py``). This module warns at start-up about secrets close to
their date, and reports, from the events table's ``key_id`` column, when
each secret last matched, so an operator can see that an old secret is
no longer used and retire it safely.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import Settings
from .counters import SECRET_MATCHES
from .store import Store

logger = logging.getLogger(__name__)

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class KeyUsage:
    """How often one secret of one source matched, and when last."""

    source: str
    key_id: str
    deliveries: int
    last_matched_at: float | None
    not_after: float | None = None
    configured: bool = True


def warn_expiring_secrets(settings: Settings, *, now: float) -> list[str]:
    """Log a WARNING for each secret expired or expiring within the window.

    The window is ``settings.secret_expiry_warning_days``. Returns the
    ``source/key_id`` names warned about. Never logs a secret.
    """
    window = settings.secret_expiry_warning_days * DAY_SECONDS
    warned: list[str] = []
    for source in settings.sources.values():
        for key in source.keys:
            if key.not_after is None or key.not_after - now > window:
                continue
            fields = {
                "source": source.name,
                "key_id": key.key_id,
                "not_after": _iso(key.not_after),
                "days_left": round((key.not_after - now) / DAY_SECONDS, 1),
            }
            if key.not_after < now:
                logger.warning("secret has expired and no longer matches", extra=fields)
            else:
                logger.warning("secret expires soon", extra=fields)
            warned.append(f"{source.name}/{key.key_id}")
    return warned


def count_secret_match(fields: Mapping[str, Any]) -> None:
    """Delivery observer: count a verified delivery under its key id."""
    key_id = fields.get("key_id")
    source = fields.get("source")
    if key_id and source:
        SECRET_MATCHES.labels(str(source), str(key_id)).inc()


def key_usage(store: Store, settings: Settings | None = None) -> list[KeyUsage]:
    """Return, per source and key id, stored deliveries and the last match.

    Counts come from the stored events (so they cover every worker and
    host sharing the store, back to the retention horizon). With
    ``settings``, configured secrets that never matched are listed too
    (count 0), and each entry says whether the key is still configured.
    """
    rows = store.execute(
        "SELECT source, key_id, COUNT(*), MAX(received_at) FROM events"
        " WHERE key_id IS NOT NULL GROUP BY source, key_id"
    )
    found = {
        (source, key_id): (int(count), float(last))
        for source, key_id, count, last in rows
    }
    usage: list[KeyUsage] = []
    configured: set[tuple[str, str]] = set()
    if settings is not None:
        for source in settings.sources.values():
            for key in source.keys:
                configured.add((source.name, key.key_id))
                count, last = found.get((source.name, key.key_id), (0, None))
                usage.append(
                    KeyUsage(source.name, key.key_id, count, last, key.not_after)
                )
    for (source_name, key_id), (count, last) in sorted(found.items()):
        if (source_name, key_id) not in configured:
            usage.append(
                KeyUsage(
                    source_name,
                    key_id,
                    count,
                    last,
                    configured=settings is None,
                )
            )
    return usage


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="seconds")
