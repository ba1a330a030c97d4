"""Log set-up and redaction.

Only this module configures log handlers. Records are written as one
JSON object per line (or a readable ``key=value`` line with
``GATEWAY_LOG_FORMAT=text``). A :class:`RedactionFilter` on the handler
removes every configured secret, bearer token and signature value from
the message, the arguments, the extra fields and the traceback before a
record is written, whichever module logged it.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

MASK = "[redacted]"
LIBRARY_LOGGERS = ("flask-limiter", "limits", "psycopg", "redis")
MIN_SECRET_CHARS = 4
# Attributes every LogRecord has; anything else on a record came from extra=.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}
# A field (or a key of a dict field, such as a headers mapping) whose name
# matches is masked whole, whatever its value: this covers every scheme's
# signature header (X-Shopify-Hmac-Sha256 included) and Authorization.
_SENSITIVE_FIELDS = re.compile(
    r"(secret|password|passwd|token|api[-_]?key|authorization|signature|hmac"
    r"|cookie|credential)",
    re.I,
)
_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\bwh(sec|sk|pk)_[A-Za-z0-9+/=]+"),
    re.compile(r"(?i)\b(sha256=|v0=|v1=)[0-9a-f]{16,}"),
    re.compile(r"\bv1a?,[A-Za-z0-9+/]{20,}={0,2}"),
]
# The password of a URL (scheme://user:password@host); the user stays.
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*):[^/\s@]+@")
_STANDARD_SECRET_PREFIX = "whsec_"
MAX_NESTED_DEPTH = 6

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
# Field values of these types hold no text and are never rewritten.
_PLAIN_TYPES = (int, float, bool, type(None))

_secrets: set[str] = set()
# Longest first, rebuilt on each registration, read without the lock.
_secrets_by_length: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def register_secrets(values: Iterable[str]) -> None:
    """Add values that must never appear in any log line.

    A Standard Webhooks secret is registered with and without its
    ``whsec_`` prefix, since code that decodes it handles the bare part.
    """
    global _secrets_by_length
    forms: set[str] = set()
    for value in values:
        forms.add(value)
        if value.startswith(_STANDARD_SECRET_PREFIX):
            forms.add(value[len(_STANDARD_SECRET_PREFIX) :])
    with _secrets_lock:
        _secrets.update(value for value in forms if len(value) >= MIN_SECRET_CHARS)
        _secrets_by_length = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """Return ``text`` with secrets, tokens and signature values masked."""
    for secret in _secrets_by_length:
        if secret in text:
            text = text.replace(secret, MASK)
    if not text.isascii() or _holds_marker(text.lower()):
        for pattern in _PATTERNS:
            text = pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    return text


class RedactionFilter(logging.Filter):
    """Masks secrets in a record's message, extra fields and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; always keep it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # exc_info stays: the record is shared with every other handler
            # (pytest's, an error tracker's), and formatters use the redacted
            # exc_text in preference to it.
            record.exc_text = redact(
                "".join(traceback.format_exception(*record.exc_info))
            )
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = vars(record)
        # Only the extra fields: a set difference, not a pass over the
        # twenty-odd standard attributes of every record.
        for name in fields.keys() - _STANDARD_ATTRIBUTES:
            value = fields[name]
            if _is_sensitive_field(name):
                fields[name] = MASK
            elif not isinstance(value, _PLAIN_TYPES):
                fields[name] = _redact_value(value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single JSON line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current:
            entry["request_id"] = current
        entry.update(_extra_fields(record))
        if record.exc_text:
            entry["traceback"] = record.exc_text
        elif record.exc_info:
            entry["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A readable line: time, level, message, then ``key=value`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line (plus a traceback, if any)."""
        fields = _extra_fields(record)
        current = request_id.get()
        if current:
            fields["request_id"] = current
        message = _one_line(record.getMessage())
        line = f"{self.formatTime(record)} {record.levelname:<7} {message}"
        if fields:
            line += " " + " ".join(
                f"{key}={_text_value(val)}" for key, val in fields.items()
            )
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def configure(level: str = "INFO", log_format: str = "json") -> None:
    """Send every log record of the process to stderr, structured and redacted.

    One handler on the root logger serves the gateway, the handler
    modules of any package and the libraries alike, so every line has the
    same format and passes the same redaction filter. Libraries log at
    WARNING and above only. Idempotent: calling it again replaces the
    handler it installed.
    """
    root = logging.getLogger()
    for name in ("", "gateway", "handlers", *LIBRARY_LOGGERS):
        named = logging.getLogger(name)
        for old in list(named.handlers):
            if getattr(old, "_gateway_handler", False):
                named.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._gateway_handler = True  # type: ignore[attr-defined]
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("gateway", "handlers"):
        logging.getLogger(name).setLevel(level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(
            max(logging.WARNING, logging.getLevelName(level.upper()))
            if isinstance(logging.getLevelName(level.upper()), int)
            else logging.WARNING
        )


@functools.lru_cache(maxsize=1024)
def _is_sensitive_field(name: str) -> bool:
    return _SENSITIVE_FIELDS.search(name) is not None


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(record).items()
        if name not in _STANDARD_ATTRIBUTES and not name.startswith("_")
    }


def _redact_value(value: Any, depth: int = 0) -> Any:
    """Redact strings inside a field value, masking sensitive keys of dicts."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN_TYPES):
        return value
    if depth >= MAX_NESTED_DEPTH:
        return MASK if isinstance(value, (Mapping, list, tuple, set)) else value
    if isinstance(value, Mapping):
        return {
            key: (
                MASK
                if _SENSITIVE_FIELDS.search(str(key))
                else _redact_value(item, depth + 1)
            )
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set)):
        return [_redact_value(item, depth + 1) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return redact(bytes(value).decode("utf-8", "replace"))
    return value


def _holds_marker(lowered: str) -> bool:
    """Whether lower-cased text holds a fragment one of _PATTERNS needs.

    An ASCII text holding none of them cannot match, so the regular
    expressions are skipped for it. (Not for other text: case-insensitive
    matching lets a few non-ASCII letters, such as the long s, stand for
    ASCII ones.) Spelled out rather than a loop: this runs for every
    string field of every record.
    """
    return (
        "=" in lowered
        or "wh" in lowered
        or "v1" in lowered
        or "bearer" in lowered
        or "basic" in lowered
    )


def _one_line(text: str) -> str:
    """Escape line breaks so that one record stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _text_value(value: Any) -> str:
    text = str(value)
    needs_quotes = not text or any(
        character.isspace() or character in '"=' or not character.isprintable()
        for character in text
    )
    return json.dumps(text) if needs_quotes else text
