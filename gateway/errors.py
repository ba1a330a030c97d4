"""The gateway's exception tree.

Every refusal a client can see is a :class:`GatewayError` subclass that
carries its HTTP ``status`` and machine ``code`` (CONTRACT.md section 1).
The error handlers in ``answers.py`` turn them into JSON answers.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway turns into a client answer."""

    status: int = 500
    code: str = "internal_error"
    message: str = "The gateway could not handle this request."

    def __init__(self, message: str | None = None, *, detail: str | None = None):
        """Build the error.

        :param message: the human sentence shown to the client; the class
            default when omitted. It must never hold a secret or a body.
        :param detail: a precise reason kept for operators only (logs and
            the refusal record), never sent to the client.
        """
        super().__init__(message or self.message)
        self.public_message = message or self.message
        self.detail = detail or self.public_message


class UnknownSource(GatewayError):
    """The URL names a source that is not configured."""

    status = 404
    code = "unknown_source"
    message = "No webhook source is configured under this name."


class MethodNotAllowed(GatewayError):
    """The webhook URL was called with a method other than POST."""

    status = 405
    code = "method_not_allowed"
    message = "Webhook deliveries must use POST."


class NotFound(GatewayError):
    """The URL does not exist on this gateway."""

    status = 404
    code = "not_found"
    message = "There is nothing at this URL."


class RateLimited(GatewayError):
    """The client sent more deliveries than its limit allows."""

    status = 429
    code = "rate_limited"
    message = "Too many deliveries from this address; retry after the delay given."


class PayloadTooLarge(GatewayError):
    """The body is larger than the source accepts."""

    status = 413
    code = "payload_too_large"
    message = "The body is larger than this source accepts."


class SignatureError(GatewayError):
    """Base of every refusal of a delivery's signature."""

    status = 401
    code = "invalid_signature"
    message = "The delivery's signature is not valid."


class MissingSignature(SignatureError):
    """A header the source's scheme needs is absent or empty."""

    code = "missing_signature"
    message = "The delivery carries no signature for this source's scheme."


class InvalidSignature(SignatureError):
    """The signature is malformed or matches none of the source's secrets."""

    code = "invalid_signature"
    message = "The delivery's signature does not match any configured secret."


class TimestampOutOfTolerance(SignatureError):
    """The signed timestamp is too far from the gateway's clock."""

    code = "timestamp_out_of_tolerance"
    message = "The delivery's timestamp is too far from the current time."


class InvalidPayload(GatewayError):
    """The body is not a JSON object with an event type."""

    status = 400
    code = "invalid_payload"
    message = "The body must be a JSON object that names an event type."


class UnsupportedMediaType(GatewayError):
    """The body's content type is not one the source takes."""

    status = 415
    code = "unsupported_media_type"
    message = "This source does not take bodies of this content type."


class Unavailable(GatewayError):
    """The gateway cannot accept the delivery now; the sender should retry."""

    status = 503
    code = "unavailable"
    message = "The gateway cannot store deliveries right now; retry later."

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: str | None = None,
        retry_after_seconds: int = 30,
    ):
        super().__init__(message, detail=detail)
        self.retry_after_seconds = retry_after_seconds


class StoreError(Exception):
    """The event store could not complete an operation.

    Raised by ``store.py`` in place of driver errors; the web layer answers
    it with :class:`Unavailable`.
    """


class ConfigError(Exception):
    """The configuration is invalid; the message names the source and key."""


class HandlerLoadError(ConfigError):
    """A handler module named in the configuration could not be imported."""
