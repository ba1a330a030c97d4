"""Error answers: every failure of a request becomes one JSON body.

Views raise :class:`GatewayError`; the handlers here turn it, a rate-limit
refusal, a Werkzeug HTTP error or an unexpected exception into
``{"error": ..., "code": ...}`` with the status and headers of CONTRACT.md,
and leave the code and detail on ``g`` for the delivery log line.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, request
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .errors import (
    GatewayError,
    InvalidPayload,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
)
from .instance import get_gateway
from .limiter import retry_after_seconds

logger = logging.getLogger(__name__)


def register_error_handlers(app: Flask) -> None:
    """Make every error of ``app`` a JSON answer with a contract code."""
    app.register_error_handler(GatewayError, _gateway_error)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _gateway_error(error: GatewayError) -> tuple[Response, int]:
    g.error_code = error.code
    g.error_message = error.public_message
    g.error_detail = error.detail
    response = jsonify({"error": error.public_message, "code": error.code})
    if isinstance(error, MethodNotAllowed):
        response.headers["Allow"] = "POST"
    if isinstance(error, Unavailable):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response, error.status


def _rate_limited(_: RateLimitExceeded) -> tuple[Response, int]:
    if g.get("delivery") is None:
        g.delivery = {"source": (request.view_args or {}).get("source")}
    response, status = _gateway_error(RateLimited())
    response.headers["Retry-After"] = str(retry_after_seconds(get_gateway().limiter))
    return response, status


def _http_error(error: HTTPException) -> tuple[Response, int]:
    if isinstance(error, RequestEntityTooLarge):
        return _gateway_error(PayloadTooLarge())
    if error.code == 405:
        return _gateway_error(MethodNotAllowed())
    if error.code == 404:
        return _gateway_error(NotFound())
    if error.code is not None and 400 <= error.code < 500:
        return _gateway_error(InvalidPayload("The request could not be read."))
    return _unexpected_error(error)


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    # A bug: logged once with its traceback; the client sees no detail.
    logger.error("unexpected error", exc_info=error)
    g.error_code = "internal_error"
    body = {
        "error": "The gateway failed unexpectedly; retry later.",
        "code": "internal_error",
    }
    return jsonify(body), 500
