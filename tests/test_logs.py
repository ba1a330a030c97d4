"""Structured logs: redaction of every configured secret, delivery lines, format."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from gateway import logs
from gateway.config import load_settings, secret_values
from tests.conftest import SECRET
from tests.helpers import hex_hmac

# One distinct secret per scheme, so that each one is checked on its own.
SCHEME_SECRETS = {
    "integration": ("hmac-sha256", "integration-secret-4f1c9a"),
    "github": ("github", "github-secret-77d0e2"),
    "stripe": ("stripe", "whsec_stripe_secret_5be91d"),
    "standard": (
        "standard",
        "whsec_c3RhbmRhcmQtc2VjcmV0LWZvci1sb2ctdGVzdHMtMDE=",
    ),
    "slack": ("slack", "slack-signing-secret-a83f"),
    "shopify": ("shopify", "shopify-secret-0c6e17"),
}
OLD_GITHUB_SECRET = "github-old-secret-rotated-91ab"
API_KEY = "api-key-live-3c0ffee7d1"
METRICS_TOKEN = "metrics-token-9e2d41b7aa"
DATABASE_PASSWORD = "db-pass-6b8c2f"
REDIS_PASSWORD = "redis-pass-2d7e90"
SOURCES_TOML = "\n".join(
    f'[sources.{name}]\nscheme = "{scheme}"\nsecrets = ["{secret}"'
    + (f', "{OLD_GITHUB_SECRET}"' if name == "github" else "")
    + "]\n"
    for name, (scheme, secret) in SCHEME_SECRETS.items()
)
EVERY_SECRET = [
    *(secret for _, secret in SCHEME_SECRETS.values()),
    # The bare base64 part of the Standard Webhooks secret.
    SCHEME_SECRETS["standard"][1].removeprefix("whsec_"),
    OLD_GITHUB_SECRET,
    API_KEY,
    METRICS_TOKEN,
    DATABASE_PASSWORD,
    REDIS_PASSWORD,
]
SIGNATURE_HEADERS = [
    "Authorization",
    "X-Integration-Signature",
    "X-Hub-Signature-256",
    "Stripe-Signature",
    "webhook-signature",
    "svix-signature",
    "X-Slack-Signature",
    "X-Shopify-Hmac-Sha256",
    "X-Api-Key",
    "Cookie",
]

test_logger = logging.getLogger("gateway.tests")


@pytest.fixture(autouse=True)
def fresh_secret_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the secrets its own app registered."""
    monkeypatch.setattr(logs, "_secrets", set())


def configured_overrides() -> dict[str, str]:
    return {
        "INTEGRATION_API_KEY": API_KEY,
        "GATEWAY_METRICS_TOKEN": METRICS_TOKEN,
        "INTEGRATION_API_URL": "https://api.example.test/v1",
    }


def capture(log_format: str = "json") -> io.StringIO:
    """Point the gateway's log handlers at a buffer and return it."""
    stream = io.StringIO()
    for name in ("", "gateway", *logs.LIBRARY_LOGGERS):
        for handler in logging.getLogger(name).handlers:
            if getattr(handler, "_gateway_handler", False):
                handler.setStream(stream)  # type: ignore[attr-defined]
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    entries = []
    for line in stream.getvalue().splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict)
        entries.append(entry)
    return entries


def delivery_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [entry for entry in json_lines(stream) if entry["message"] == "delivery"]


@pytest.fixture
def secret_app(make_app):
    """An app holding every kind of secret the configuration can hold.

    The app runs on SQLite and in-memory limits; the passwords of a
    PostgreSQL and a Redis URL are registered from a second configuration
    that only has to hold them.
    """
    app = make_app(SOURCES_TOML, GATEWAY_LOG_FORMAT="json", **configured_overrides())
    with_urls = load_settings(
        {
            "INTEGRATION_SECRET_KEY": SECRET,
            "GATEWAY_DATABASE_URL": (
                f"postgresql://gateway:{DATABASE_PASSWORD}@db.internal/gw"
            ),
            "RATELIMIT_STORAGE_URI": f"redis://:{REDIS_PASSWORD}@cache:6379",
        }
    )
    logs.register_secrets(secret_values(with_urls))
    return app


@pytest.fixture
def json_app(make_app):
    return make_app(GATEWAY_LOG_FORMAT="json")


# -- the configuration names all of its secrets ------------------------------


def test_config_lists_every_secret_it_holds(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES_TOML)
    settings = load_settings(
        {
            "GATEWAY_CONFIG": str(path),
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_DATABASE_URL": (
                f"postgresql://gateway:{DATABASE_PASSWORD}@db.internal/gw"
            ),
            "RATELIMIT_STORAGE_URI": f"redis://:{REDIS_PASSWORD}@cache:6379",
            **configured_overrides(),
        }
    )
    listed = set(secret_values(settings))
    expected = set(EVERY_SECRET) - {
        SCHEME_SECRETS["standard"][1].removeprefix("whsec_")
    }
    assert expected <= listed


def test_percent_encoded_url_password_is_listed_both_ways(tmp_path):
    settings = load_settings(
        {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "INTEGRATION_SECRET_KEY": SECRET,
            "GATEWAY_DATABASE_URL": "postgresql://gateway:p%40ss-word-42@db/gw",
        }
    )
    assert {"p%40ss-word-42", "p@ss-word-42"} <= set(secret_values(settings))


# -- the redaction filter, fed every secret ------------------------------------


@pytest.mark.parametrize("secret", EVERY_SECRET)
def test_secret_in_the_message_is_redacted(secret_app, secret):
    stream = capture()
    test_logger.warning("connecting with " + secret + " now")
    text = stream.getvalue()
    assert secret not in text
    assert json_lines(stream)[0]["message"] == f"connecting with {logs.MASK} now"


@pytest.mark.parametrize("secret", EVERY_SECRET)
def test_a_handler_package_logger_is_structured_and_redacted(secret_app, secret):
    stream = capture()
    team_logger = logging.getLogger("acme_hooks.reminders")
    team_logger.info("reminder sent", extra={"owner": "o-1", "note": secret})
    entry = json_lines(stream)[0]
    assert entry["logger"] == "acme_hooks.reminders"
    assert entry["message"] == "reminder sent"
    assert entry["owner"] == "o-1"
    assert secret not in stream.getvalue()


@pytest.mark.parametrize("secret", EVERY_SECRET)
def test_secret_in_the_arguments_is_redacted(secret_app, secret):
    stream = capture()
    test_logger.info("value %s and %r", secret, {"nested": secret})
    assert secret not in stream.getvalue()
    assert logs.MASK in json_lines(stream)[0]["message"]


@pytest.mark.parametrize("secret", EVERY_SECRET)
def test_secret_in_extra_fields_is_redacted(secret_app, secret):
    stream = capture()
    test_logger.info(
        "extra",
        extra={
            "note": f"prefix {secret} suffix",
            "details": {"inner": [secret, {"deeper": secret}]},
            "raw": secret.encode(),
        },
    )
    assert secret not in stream.getvalue()
    entry = json_lines(stream)[0]
    assert entry["note"] == f"prefix {logs.MASK} suffix"


@pytest.mark.parametrize("secret", EVERY_SECRET)
def test_secret_in_a_traceback_is_redacted(secret_app, secret):
    stream = capture()
    try:
        raise ValueError(f"could not use {secret}")
    except ValueError:
        test_logger.exception("failed")
    text = stream.getvalue()
    assert secret not in text
    entry = json_lines(stream)[0]
    assert "ValueError: could not use [redacted]" in entry["traceback"]


@pytest.mark.parametrize("secret", EVERY_SECRET)
def test_secret_in_a_chained_exception_is_redacted(secret_app, secret):
    stream = capture()
    try:
        try:
            raise KeyError(secret)
        except KeyError as err:
            raise RuntimeError("lookup failed") from err
    except RuntimeError:
        test_logger.error("failed", exc_info=True)
    assert secret not in stream.getvalue()


@pytest.mark.parametrize("secret", EVERY_SECRET)
def test_secret_logged_by_a_library_is_redacted(secret_app, secret):
    stream = capture()
    logging.getLogger("flask-limiter").warning("storage at %s failed", secret)
    logging.getLogger("psycopg.pool").warning("error connecting: %s", secret)
    assert secret not in stream.getvalue()
    assert len(json_lines(stream)) == 2


@pytest.mark.parametrize("name", ["api_key", "token", "password", "client_secret"])
def test_fields_with_a_sensitive_name_are_masked_whatever_they_hold(json_app, name):
    stream = capture()
    test_logger.info("extra", extra={name: "not-registered-anywhere-1234"})
    assert json_lines(stream)[0][name] == logs.MASK


def test_url_credentials_are_redacted_even_when_not_configured(json_app):
    stream = capture()
    test_logger.warning("cannot reach %s", "redis://user:hunter2-x@cache:6379/0")
    assert "hunter2-x" not in stream.getvalue()
    assert "redis://user:[redacted]@cache:6379/0" in json_lines(stream)[0]["message"]


def test_signature_and_bearer_values_are_redacted_in_free_text(json_app):
    stream = capture()
    test_logger.info(
        "headers were %s",
        "Authorization: Bearer abc.def.ghi sha256="
        + "ab" * 32
        + " v1,"
        + "Q" * 43
        + "=",
    )
    message = json_lines(stream)[0]["message"]
    assert "abc.def.ghi" not in message
    assert "ab" * 32 not in message
    assert "Q" * 43 not in message


# -- Authorization and signature headers ---------------------------------------


def test_signature_headers_in_a_logged_mapping_are_masked(json_app):
    stream = capture()
    headers = {name: f"value-of-{name}-0123456789" for name in SIGNATURE_HEADERS}
    headers["Content-Type"] = "application/json"
    test_logger.info("headers", extra={"headers": headers})
    entry = json_lines(stream)[0]
    for name in SIGNATURE_HEADERS:
        assert entry["headers"][name] == logs.MASK
        assert f"value-of-{name}" not in stream.getvalue()
    assert entry["headers"]["Content-Type"] == "application/json"


def test_a_delivery_never_logs_its_authorization_or_signature(secret_app):
    stream = capture()
    secret = SCHEME_SECRETS["integration"][1]
    body = b'{"id": "evt_log_1", "type": "message.sent", "data": {}}'
    signature = hex_hmac(body, secret)
    client = secret_app.test_client()
    response = client.post(
        "/api/webhooks/integration",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Integration-Signature": signature,
            "Authorization": "Bearer provider-token-55aa77",
        },
    )
    assert response.status_code == 202
    wrong = client.post(
        "/api/webhooks/integration",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Integration-Signature": "f" * 64,
        },
    )
    assert wrong.status_code == 401
    text = stream.getvalue()
    assert signature not in text
    assert "f" * 64 not in text
    assert "provider-token-55aa77" not in text
    assert body.decode() not in text


# -- one line per delivery -----------------------------------------------------


def signed_post(client: Any, body: bytes, **headers: str) -> Any:
    return client.post(
        "/api/webhooks/integration",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Integration-Signature": hex_hmac(body, SECRET),
            **headers,
        },
    )


DELIVERY_FIELDS = {
    "source",
    "event_id",
    "event_type",
    "status",
    "code",
    "duration_ms",
    "client_ip",
    "request_id",
}


def test_accepted_delivery_logs_one_line_with_its_fields(json_app):
    stream = capture()
    body = b'{"id": "evt_a", "type": "message.sent", "data": {}}'
    signed_post(json_app.test_client(), body, **{"X-Request-Id": "req-accepted-1"})
    (line,) = delivery_lines(stream)
    assert DELIVERY_FIELDS <= set(line)
    assert line["level"] == "info"
    assert line["source"] == "integration"
    assert line["event_id"] == "evt_a"
    assert line["event_type"] == "message.sent"
    assert line["status"] == 202
    assert line["code"] is None
    assert line["duplicate"] is False
    assert isinstance(line["duration_ms"], (int, float))
    assert line["client_ip"] == "127.0.0.1"
    assert line["request_id"] == "req-accepted-1"


def test_duplicate_delivery_logs_one_line_marked_duplicate(json_app):
    client = json_app.test_client()
    body = b'{"id": "evt_d", "type": "message.sent", "data": {}}'
    signed_post(client, body)
    stream = capture()
    signed_post(client, body)
    (line,) = delivery_lines(stream)
    assert line["status"] == 200
    assert line["duplicate"] is True
    assert line["event_id"] == "evt_d"


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        (
            "/api/webhooks/integration",
            {"X-Integration-Signature": "0" * 64},
            401,
            "invalid_signature",
        ),
        ("/api/webhooks/integration", {}, 401, "missing_signature"),
        ("/api/webhooks/elsewhere", {}, 404, "unknown_source"),
    ],
)
def test_refused_delivery_logs_one_line_with_its_code(
    json_app, path, headers, status, code
):
    stream = capture()
    json_app.test_client().post(
        path,
        data=b'{"id": "evt_r", "type": "message.sent"}',
        headers={"Content-Type": "application/json", **headers},
    )
    (line,) = delivery_lines(stream)
    assert DELIVERY_FIELDS <= set(line)
    assert line["status"] == status
    assert line["code"] == code
    assert line["event_id"] is None


def test_probes_log_no_delivery_line(json_app):
    stream = capture()
    client = json_app.test_client()
    client.get("/healthz")
    client.get("/readyz")
    client.get("/metrics")
    assert delivery_lines(stream) == []


def test_request_id_is_made_when_missing_or_unusable(json_app):
    stream = capture()
    client = json_app.test_client()
    body = b'{"id": "evt_q", "type": "message.sent", "data": {}}'
    signed_post(client, body)
    signed_post(client, body, **{"X-Request-Id": "has spaces\tand tabs"})
    signed_post(client, body, **{"X-Request-Id": "x" * 500})
    identifiers = [line["request_id"] for line in delivery_lines(stream)]
    assert len(set(identifiers)) == 3
    assert all(len(value) == 32 and value.isalnum() for value in identifiers)


def test_handler_outcomes_are_logged_with_their_fields(json_app, connect):
    gateway = json_app.extensions["gateway"]

    def works(source: str, event: Any) -> None:
        return None

    def breaks(source: str, event: Any) -> None:
        raise RuntimeError(f"broken with {SECRET}")

    connect("message.sent", works)
    connect("message.sent", breaks)
    signed_post(
        json_app.test_client(), b'{"id": "evt_h", "type": "message.sent", "data": {}}'
    )
    stream = capture()
    gateway.dispatcher.run_until_idle()
    entries = [entry for entry in json_lines(stream) if "handler" in entry]
    by_handler = {entry["handler"].rsplit(".", 1)[-1]: entry for entry in entries}
    assert by_handler["works"]["message"] == "handler succeeded"
    assert by_handler["works"]["status"] == "ok"
    assert by_handler["breaks"]["status"] == "retrying"
    assert by_handler["breaks"]["level"] == "warning"
    for entry in entries:
        assert entry["event_id"] == "evt_h"
        assert entry["attempt"] == 1
        assert isinstance(entry["duration_ms"], (int, float))
    # A retry logs the error; the traceback comes once, with the last try.
    assert by_handler["breaks"]["error"] == "RuntimeError: broken with [redacted]"
    assert "traceback" not in by_handler["breaks"]
    assert SECRET not in stream.getvalue()


# -- format --------------------------------------------------------------------


def test_every_json_line_is_one_valid_object(json_app, connect):
    stream = capture()
    client = json_app.test_client()
    signed_post(client, b'{"id": "evt_j", "type": "message.sent", "data": {}}')
    client.post("/api/webhooks/integration", data=b"not json")
    client.post("/api/webhooks/nowhere\nforged", data=b"{}")
    test_logger.info("odd values", extra={"when": object(), "text": "a\nb\x00"})
    try:
        raise OSError("disk\nfull")
    except OSError:
        test_logger.exception("with a traceback")
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 5
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= set(entry)


def test_text_format_writes_one_readable_line_per_record(make_app):
    make_app(GATEWAY_LOG_FORMAT="text", INTEGRATION_API_KEY=API_KEY)
    stream = capture()
    test_logger.info(
        "delivery",
        extra={"source": "integration", "status": 202, "note": "two words"},
    )
    (line,) = stream.getvalue().splitlines()
    assert " INFO    delivery " in line
    assert "source=integration" in line
    assert "status=202" in line
    assert 'note="two words"' in line


def test_text_format_keeps_a_forged_line_break_on_one_line(make_app):
    make_app(GATEWAY_LOG_FORMAT="text")
    stream = capture()
    test_logger.info(
        "refused %s", "x\nFAKE ERROR line", extra={"source": "a\nFAKE level=error"}
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert not any(line.startswith("FAKE") for line in lines)


def test_text_format_redacts_secrets_too(make_app):
    make_app(GATEWAY_LOG_FORMAT="text", INTEGRATION_API_KEY=API_KEY)
    stream = capture()
    test_logger.info("key %s", API_KEY, extra={"note": API_KEY})
    assert API_KEY not in stream.getvalue()
