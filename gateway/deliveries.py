"""Build signed deliveries the way a provider would send them.

Used by ``gateway send`` and by the handler authors' test kit
(:mod:`gateway.testing`): given a configured source, a body and an event
type, it returns the exact bytes and headers a compliant provider of
that source's scheme would post, signed with one of the source's own
secrets. Plain Python, no Flask and no HTTP.

Where the event type and id go depends on the scheme (CONTRACT.md
section 2): in the body (``type``/``id`` for ``hmac-sha256``, ``stripe``
and ``standard``; ``event.type``/``event_id`` for ``slack``) or in
headers (``X-GitHub-Event``/``X-GitHub-Delivery`` for ``github``,
``X-Shopify-Topic``/``X-Shopify-Webhook-Id`` for ``shopify``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import SourceConfig
from .errors import ConfigError

HEADER_TYPED_SCHEMES = frozenset({"github", "shopify"})
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Delivery:
    """A signed delivery, ready to post to ``/api/webhooks/<source>``.

    ``headers`` hold the content type, the scheme's signature headers and
    the provider's id and type headers; they are credentials for this one
    body and must not be printed or logged.
    """

    source: str
    body: bytes
    headers: Mapping[str, str] = field(repr=False)


def prepare_body(
    scheme: str,
    payload: Mapping[str, Any],
    *,
    event_type: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Return a copy of ``payload`` with the event type and id put in place.

    Only schemes that read them from the body are changed; for
    ``github`` and ``shopify`` they travel in headers (see
    :func:`sign_delivery`). A Slack body without an ``event`` object
    becomes an ``event_callback`` carrying one.
    """
    body = dict(payload)
    if scheme in HEADER_TYPED_SCHEMES:
        return body
    if scheme == "slack":
        if event_type is not None:
            inner = body.get("event")
            inner = dict(inner) if isinstance(inner, Mapping) else {}
            inner["type"] = event_type
            body["event"] = inner
            body.setdefault("type", "event_callback")
        if event_id is not None:
            body["event_id"] = event_id
        return body
    if event_type is not None:
        body["type"] = event_type
    if event_id is not None:
        body["id"] = event_id
    return body


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Serialise a body as compact UTF-8 JSON, as most providers do."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sign_delivery(
    source: SourceConfig,
    body: bytes,
    *,
    now: float,
    event_type: str | None = None,
    delivery_id: str | None = None,
    secret: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Delivery:
    """Sign ``body`` for ``source`` and add the provider's usual headers.

    :param now: the unix time to sign (timestamped schemes).
    :param event_type: required for ``github`` (the ``X-GitHub-Event``
        value, e.g. ``issues``; the body's ``action`` completes the type)
        and ``shopify`` (the topic, e.g. ``orders/create``); ignored by
        the other schemes, whose type is in the body.
    :param delivery_id: the delivery header's value for ``github``,
        ``shopify`` and ``standard``; a fresh random id when omitted.
    :param secret: sign with this secret instead of the source's own
        (to test a refusal); by default the first of the source's
        secrets that is still valid at ``now``.
    :param headers: extra headers, added last (they may replace any
        header but the signature).
    :raises ValueError: ``github`` or ``shopify`` without ``event_type``.
    :raises ConfigError: the source holds no secret that can sign
        (e.g. only a Standard Webhooks ``whpk_`` public key).
    """
    scheme = source.scheme
    chosen = secret if secret is not None else signing_secret(source, now)
    moment = int(now)
    result: dict[str, str] = {"Content-Type": JSON_CONTENT_TYPE}
    if scheme.name in HEADER_TYPED_SCHEMES and not event_type:
        raise ValueError(
            f"A {scheme.name} delivery needs an event type: it travels in a header."
        )
    if scheme.name == "github":
        result["X-GitHub-Event"] = str(event_type)
        result["X-GitHub-Delivery"] = delivery_id or str(uuid.uuid4())
    elif scheme.name == "shopify":
        result["X-Shopify-Topic"] = str(event_type)
        result["X-Shopify-Webhook-Id"] = delivery_id or str(uuid.uuid4())
    signature = scheme.sign(
        body,
        chosen,
        now=moment,
        message_id=delivery_id if scheme.name == "standard" else None,
    )
    if headers:
        result.update(headers)
    result.update(signature)
    return Delivery(source.name, body, result)


def signing_secret(source: SourceConfig, now: float) -> str:
    """Return the secret a sender should use for ``source`` at ``now``.

    The first configured secret that has not expired; a Standard
    Webhooks ``whpk_`` public key cannot sign and is skipped.

    :raises ConfigError: no configured secret can sign.
    """
    for key, text in zip(source.keys, source.secret_texts, strict=False):
        if key.not_after is not None and key.not_after < now:
            continue
        if key.kind != "hmac":
            continue
        return text
    raise ConfigError(
        f"[sources.{source.name}]: no configured secret can sign deliveries"
        " (expired, or a public key only)."
    )
