"""``gateway send``: sign an example or a JSON file and post it to a gateway.

The delivery is signed with the chosen source's configured secret, as
its provider would sign it (:mod:`gateway.deliveries`), and posted only
to the URL the user gives: no proxy from the environment, no redirect.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import click
import requests

from .cli_support import (
    EXIT_DELIVERY,
    EXIT_USAGE,
    CliState,
    current_state,
    fail,
    json_option,
    masked_url,
)
from .config import SourceConfig
from .deliveries import HEADER_TYPED_SCHEMES, encode_body, prepare_body, sign_delivery

DEFAULT_URL = "http://127.0.0.1:8000"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
# The example `send` posts when none is named, per scheme.
DEFAULT_EXAMPLES = {
    "hmac-sha256": "message.delivered.json",
    "github": "github.issues.opened.json",
    "stripe": "stripe.invoice.paid.json",
    "standard": "standard.appointment.booked.json",
    "slack": "slack.event_callback.json",
    "shopify": "shopify.orders.create.json",
}
MAX_ANSWER_CHARS = 2000


@click.command()
@click.argument("body", required=False)
@click.option("--source", "-s", help="Configured source to sign for.")
@click.option(
    "--url",
    envvar="INTEGRATION_WEBHOOK_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The gateway's base URL, or a full .../api/webhooks/<source> URL"
    " (default from INTEGRATION_WEBHOOK_URL).",
)
@click.option("--event-type", "-t", help="Event type (a header for github/shopify).")
@click.option("--event-id", help="Event id to put in the body or delivery header.")
@click.option("--new-id", is_flag=True, help="Use a fresh random event id.")
@click.option(
    "--header", "-H", "extra_headers", multiple=True, help="Extra 'Name: value'."
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait.")
@json_option
def send(
    body: str | None,
    source: str | None,
    url: str,
    event_type: str | None,
    event_id: str | None,
    new_id: bool,
    extra_headers: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Sign an example or a JSON file and post it to a running gateway.

    BODY is an example of examples/ (e.g. message.read.json or github.ping)
    or a path; by default, the example for the source's scheme. The
    delivery is signed with the source's configured secret, and carries
    the provider's id and type headers for github and shopify.
    """
    state = current_state()
    config = _choose_source(state, source)
    scheme = config.scheme_name
    path = _find_body(body, scheme)
    raw = path.read_bytes()
    if new_id:
        event_id = f"evt_{uuid.uuid4().hex[:20]}"
    in_body = scheme not in HEADER_TYPED_SCHEMES
    if in_body and (event_type or event_id):
        # The type and id of these schemes live in the body, so it is
        # re-encoded; otherwise the file's bytes are sent as they are.
        payload = prepare_body(
            scheme, _json_object(raw, path), event_type=event_type, event_id=event_id
        )
        raw = encode_body(payload)
    event_type = event_type or _type_from_name(path.name, scheme)
    if not in_body and not event_type:
        fail(f"a {scheme} delivery needs --event-type (e.g. issues).", EXIT_USAGE)
    delivery = sign_delivery(
        config,
        raw,
        now=time.time(),
        event_type=event_type,
        delivery_id=None if in_body else event_id,
        headers=_parse_headers(extra_headers),
    )
    target = webhook_url(url, config.name)
    session = requests.Session()
    session.trust_env = False  # only ever the URL given: no proxy, no .netrc
    try:
        response = session.post(
            target,
            data=delivery.body,
            headers=dict(delivery.headers),
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as err:
        fail(
            f"could not reach {masked_url(target)}: {type(err).__name__}",
            EXIT_DELIVERY,
        )
    finally:
        session.close()
    answer = _answer(response)
    if as_json:
        state.emit_json(
            {
                "url": masked_url(target),
                "source": config.name,
                "scheme": scheme,
                "file": path.name,
                "status": response.status_code,
                "answer": answer,
            }
        )
    else:
        state.echo(f"POST {masked_url(target)} ({config.name}, {scheme}, {path.name})")
        state.echo(f"{response.status_code} {response.reason}")
        state.echo(
            json.dumps(answer, indent=2, ensure_ascii=False)
            if not isinstance(answer, str)
            else answer
        )
    if not 200 <= response.status_code < 300:
        sys.exit(EXIT_DELIVERY)


def webhook_url(base: str, source: str) -> str:
    """Return the delivery URL of ``source`` on the gateway at ``base``.

    ``base`` is the gateway's root (``http://127.0.0.1:8000``) or any
    ``.../api/webhooks/<name>`` URL, whose source part is replaced.

    :raises click.BadParameter: not an http(s) URL.
    """
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="url")
    path = parts.path
    marker = "/api/webhooks/"
    if marker in path:
        path = path[: path.index(marker)]
    path = path.rstrip("/") + marker + quote(source, safe="")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _choose_source(state: CliState, name: str | None) -> SourceConfig:
    sources = state.settings.sources
    if name is None:
        if "integration" in sources:
            name = "integration"
        elif len(sources) == 1:
            name = next(iter(sources))
        else:
            raise click.UsageError(
                "choose a source with --source: " + ", ".join(sorted(sources))
            )
    if name not in sources:
        raise click.UsageError(
            f"no source {name!r} is configured; configured: "
            + ", ".join(sorted(sources))
        )
    return sources[name]


def _find_body(body: str | None, scheme: str) -> Path:
    if body is None:
        body = DEFAULT_EXAMPLES[scheme]
    for candidate in (
        Path(body),
        EXAMPLES_DIR / body,
        EXAMPLES_DIR / f"{body}.json",
    ):
        if candidate.is_file():
            return candidate
    available = sorted(path.name for path in EXAMPLES_DIR.glob("*.json"))
    raise click.BadParameter(
        f"{body!r} is neither a file nor an example; examples: "
        + (", ".join(available) or "none"),
        param_hint="BODY",
    )


def _type_from_name(name: str, scheme: str) -> str | None:
    """Read the github event or shopify topic from an example's file name."""
    parts = name.removesuffix(".json").split(".")
    if scheme not in HEADER_TYPED_SCHEMES or len(parts) < 2 or parts[0] != scheme:
        return None
    if scheme == "github":
        return parts[1]
    return "/".join(parts[1:])


def _json_object(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise click.BadParameter(f"{path.name} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"{path.name} does not hold a JSON object.")
    return value


def _parse_headers(items: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, separator, value = item.partition(":")
        if not separator or not name.strip():
            raise click.BadParameter(
                f"{item!r} is not 'Name: value'", param_hint="--header"
            )
        headers[name.strip()] = value.strip()
    return headers


def _answer(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:MAX_ANSWER_CHARS]
