"""The webhook view: one delivery from its source name to its answer.

:func:`receive` follows CONTRACT.md section 1 in order, cheapest refusal
first (the rate limit runs before it, in flask-limiter): unknown source,
method, back-pressure, body size, signature over the raw bytes, parsing,
deduplication, durable storage, then the answer. Handlers run afterwards
in the dispatcher thread. :func:`read_body` reads the raw bytes with a
bound, before anything could parse them.
"""

from __future__ import annotations

from flask import Response, g, jsonify, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from .diagnosis import explain_refusal
from .errors import (
    InvalidPayload,
    MethodNotAllowed,
    PayloadTooLarge,
    SignatureError,
    StoreError,
    Unavailable,
    UnknownSource,
)
from .events import make_event, parse_delivery
from .instance import get_gateway

READ_CHUNK_BYTES = 64 * 1024


def _server_read_errors() -> tuple[type[BaseException], ...]:
    try:
        from gunicorn.http.errors import ParseException
    except ImportError:  # served by another WSGI server
        return ()
    return (ParseException,)


_BODY_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    *_server_read_errors(),
)


def receive(source_name: str) -> tuple[Response, int]:
    """Take one delivery for ``source_name``: the webhook view's work.

    Checks in the contract's order (CONTRACT.md section 1): source,
    method, backpressure, body size, signature over the raw bytes,
    parsing; then stores the event and answers 202 (200 for a repeat, the
    Slack challenge for a url_verification). Refusals are raised as
    :class:`GatewayError` for the error handlers in ``answers.py``.
    """
    gateway = get_gateway()
    source = gateway.settings.sources.get(source_name)
    g.delivery = {"source": source_name}
    if source is None:
        raise UnknownSource()
    if request.method != "POST":
        raise MethodNotAllowed()
    if gateway.backpressure is not None:
        gateway.backpressure.check()
    body = read_body(source.max_body_bytes)
    g.body = body
    headers = {name.lower(): value for name, value in request.headers.items()}
    now = gateway.clock()
    try:
        verification = source.scheme.verify(
            body,
            headers,
            source.keys,
            now=now,
            tolerance_seconds=source.tolerance_seconds,
        )
    except SignatureError as error:
        # The client gets only the code; the refusal log keeps the cause.
        error.detail = explain_refusal(error, source, body, headers, now=now)
        raise
    g.delivery["key_id"] = verification.key_id
    delivery = parse_delivery(
        source.scheme_name, body, request.headers.get("Content-Type"), headers
    )
    if delivery.challenge is not None:
        g.delivery["event_type"] = delivery.event_type
        return jsonify({"challenge": delivery.challenge}), 200
    event = make_event(
        source=source.name,
        delivery=delivery,
        received_at=gateway.clock(),
        headers=headers,
        signature_headers=source.scheme.signature_headers,
    )
    g.delivery.update(event_id=event.id, event_type=event.type)
    try:
        gateway.ensure_schema()
        inserted = gateway.store.insert_event(
            event, verification.key_id, payload_json=delivery.payload_json
        )
    except StoreError as err:
        raise Unavailable(detail=f"event store write failed: {err}") from err
    g.delivery["duplicate"] = not inserted
    if inserted:
        gateway.dispatcher.wake()
    answer = {"received": True, "id": event.id, "duplicate": not inserted}
    return jsonify(answer), (202 if inserted else 200)


def read_body(max_bytes: int) -> bytes:
    """Read the request's raw body, refusing it once it passes ``max_bytes``.

    Decided from Content-Length when given, else by a bounded read, so an
    endless chunked body never fills memory. The raw bytes are read
    before anything could parse the body (field cases 1 and 2).
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge()
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = stream.read(min(READ_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge()
            chunks.append(chunk)
    except RequestEntityTooLarge:
        raise PayloadTooLarge() from None
    except ClientDisconnected:
        raise InvalidPayload("The body ended before its announced length.") from None
    except _BODY_READ_ERRORS as err:
        # Malformed chunked framing or a dropped connection, raised by the
        # WSGI server while the body is read: the client's fault, not ours.
        raise InvalidPayload(
            "The body could not be read.", detail=f"body read failed: {err!r}"
        ) from None
    if length is not None and total < length:
        # gunicorn hands over what arrived when the client closes early.
        raise InvalidPayload("The body ended before its announced length.")
    return b"".join(chunks)
