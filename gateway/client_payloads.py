"""What the outbound client sends and reads: request bodies and answers.

Checks messages before anything is sent (so a malformed batch sends
nothing) and turns the provider's JSON answers into the results of
:mod:`gateway.client_types`. No network access; :mod:`gateway.client`
does the requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from gateway.client_types import InvalidResponse, MessageStatus, SentMessage

# Logged under the client's name, as before this module was split out,
# so one logger setting still covers everything the client reports.
logger = logging.getLogger("gateway.client")

MESSAGE_TYPES = frozenset({"text", "media", "template"})
MAX_ERROR_MESSAGE_CHARS = 300


def loggable_url(url: str) -> str:
    """``url`` without its query and fragment, fit for logs and messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def message_body(
    to: object, content: object, message_type: object, metadata: object
) -> bytes:
    """The JSON body of one send; :class:`ValueError` if malformed."""
    if message_type not in MESSAGE_TYPES:
        raise ValueError(
            f"Unknown message type {message_type!r}. "
            f"Use one of: {', '.join(sorted(MESSAGE_TYPES))}."
        )
    if not isinstance(to, str) or not to.strip():
        raise ValueError("The recipient 'to' must be a non-empty string.")
    if not isinstance(content, str | Mapping):
        raise ValueError("The content must be a string or a mapping.")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValueError("The metadata must be a mapping or None.")
    document = {
        "to": to,
        "content": dict(content) if isinstance(content, Mapping) else content,
        "type": message_type,
        "metadata": dict(metadata) if metadata is not None else {},
    }
    try:
        return json.dumps(document, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ValueError("The content and metadata must be JSON-serialisable.") from err


def check_batch_item(index: int, item: object) -> None:
    """Refuse a malformed batch message, naming its position."""
    if not isinstance(item, Mapping):
        raise ValueError(f"Batch message {index} is not a mapping.")
    unknown = set(item) - {"to", "content", "type", "metadata", "idempotency_key"}
    if unknown:
        raise ValueError(
            f"Batch message {index} has unknown fields: {', '.join(sorted(unknown))}."
        )
    missing = {"to", "content"} - set(item)
    if missing:
        raise ValueError(
            f"Batch message {index} lacks fields: {', '.join(sorted(missing))}."
        )
    try:
        message_body(
            item["to"], item["content"], item.get("type", "text"), item.get("metadata")
        )
        check_idempotency_key(item.get("idempotency_key"))
    except ValueError as err:
        raise ValueError(f"Batch message {index} is invalid: {err}") from err


def check_idempotency_key(key: object) -> None:
    """Refuse an idempotency key that is not ``None`` or text."""
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise ValueError("The idempotency key must be a non-empty string or None.")


def json_object(
    response: requests.Response, method: str, url: str
) -> Mapping[str, Any]:
    """The answer's JSON object; :class:`InvalidResponse` otherwise."""
    try:
        payload = response.json()
    except ValueError as err:
        raise InvalidResponse(
            f"{method} {loggable_url(url)} answered HTTP {response.status_code} "
            "with a body that is not JSON."
        ) from err
    if not isinstance(payload, dict):
        raise InvalidResponse(
            f"{method} {loggable_url(url)} answered with JSON that is not an object."
        )
    return payload


def provider_message(response: requests.Response) -> str:
    """The provider's explanation of an error answer, shortened."""
    message: object = None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        message = payload.get("error") or payload.get("message")
        if isinstance(message, dict):
            message = message.get("message") or message.get("code")
    if not message:
        message = response.text.strip() if payload is None else None
    text = str(message) if message else (response.reason or "no explanation given")
    return text[:MAX_ERROR_MESSAGE_CHARS]


def parse_sent_message(payload: Mapping[str, Any], key: str) -> SentMessage:
    """The accepted message of a send's answer."""
    return SentMessage(
        id=_require_id(payload),
        status=_parse_status(payload.get("status")),
        to=_optional_text(payload.get("to")),
        created_at=_parse_timestamp(_first_present(payload, "created_at", "timestamp")),
        idempotency_key=key,
        raw=dict(payload),
    )


def parse_message_status(payload: Mapping[str, Any]) -> MessageStatus:
    """The message status of a status answer."""
    return MessageStatus(
        id=_require_id(payload),
        status=_parse_status(payload.get("status")),
        to=_optional_text(payload.get("to")),
        timestamp=_parse_timestamp(
            _first_present(payload, "timestamp", "updated_at", "created_at")
        ),
        error=_parse_error(payload.get("error")),
        raw=dict(payload),
    )


def _require_id(payload: Mapping[str, Any]) -> str:
    message_id = payload.get("id")
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        return str(message_id)
    if not isinstance(message_id, str) or not message_id:
        raise InvalidResponse("The provider's answer does not name the message id.")
    return message_id


def _optional_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _parse_status(value: object) -> str | None:
    text = _optional_text(value)
    return text.lower() if text is not None else None


def _parse_error(value: object) -> str | None:
    if isinstance(value, Mapping):
        return _optional_text(value.get("message") or value.get("code"))
    return _optional_text(value)


def _parse_timestamp(value: object) -> datetime | None:
    """Turn ISO 8601 text or unix seconds into an aware datetime, or ``None``."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, tz=UTC)
        if isinstance(value, str):
            text = value.strip()
            try:
                return datetime.fromtimestamp(float(text), tz=UTC)
            except ValueError:
                pass
            moment = datetime.fromisoformat(text)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    logger.warning(
        "provider sent an unreadable timestamp", extra={"value": repr(value)}
    )
    return None


def _first_present(payload: Mapping[str, Any], *names: str) -> object:
    for name in names:
        if payload.get(name) not in (None, ""):
            return payload[name]
    return None
