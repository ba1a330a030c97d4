"""Tests of the outbound client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import pytest
import requests

from gateway.client import (
    MAX_RETRY_AFTER_SECONDS,
    APIError,
    AuthenticationError,
    BatchResult,
    ClientError,
    ConnectionFailed,
    IntegrationClient,
    InvalidResponse,
    MessageStatus,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    SentMessage,
    __version__,
)
from gateway.errors import ConfigError, GatewayError
from tests.provider_api import FakeProvider, RecordedRequest, Reply

API_KEY = "sk_live_unit_test_key_7f3a9c"
FIXED_NOW = 1_714_564_800.0


class RecordingSleep:
    """A stand-in for ``time.sleep`` that records delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class UpperBoundRandom(random.Random):
    """Jitter that always picks the top of its range, to expose the caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep requests from routing the local traffic through a proxy."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_client(
    provider: FakeProvider, sleep: RecordingSleep
) -> Iterator[Callable[..., IntegrationClient]]:
    """Build clients aimed at the fake provider; close them afterwards."""
    clients: list[IntegrationClient] = []

    def build(**options: Any) -> IntegrationClient:
        options.setdefault("base_url", provider.url)
        options.setdefault("timeout", 2)
        options.setdefault("sleep", sleep)
        options.setdefault("clock", lambda: FIXED_NOW)
        client = IntegrationClient(API_KEY, **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def closed_port() -> int:
    """Return a port of 127.0.0.1 that was just bound and released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Sending and reading status


def test_send_message_returns_parsed_sent_message(make_client):
    message = make_client().send_message("+15550001", "hello")

    assert isinstance(message, SentMessage)
    assert message.id == "msg_1"
    assert message.status == "queued"
    assert message.to == "+15550001"
    assert message.created_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_send_message_posts_the_message_as_json(make_client, provider):
    make_client().send_message("+15550001", "hi", "template", {"campaign": "may"})

    (request,) = provider.requests
    assert (request.method, request.path) == ("POST", "/messages")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "to": "+15550001",
        "content": "hi",
        "type": "template",
        "metadata": {"campaign": "may"},
    }


def test_missing_metadata_is_sent_as_empty_object(make_client, provider):
    make_client().send_message("+15550001", "hi")

    assert provider.requests[0].json()["metadata"] == {}


def test_requests_carry_bearer_key_and_user_agent(make_client, provider):
    make_client().send_message("+15550001", "hi")

    headers = provider.requests[0].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["user-agent"] == f"webhook-gateway/{__version__}"


@pytest.mark.parametrize("bad_type", ["sms", "", "TEXT", None])
def test_unknown_type_is_refused_before_any_request(make_client, provider, bad_type):
    with pytest.raises(ValueError, match="message type"):
        make_client().send_message("+15550001", "hi", bad_type)

    assert provider.requests == []


def test_unserialisable_metadata_is_refused_before_any_request(make_client, provider):
    with pytest.raises(ValueError, match="JSON"):
        make_client().send_message("+15550001", "hi", metadata={"when": object()})

    assert provider.requests == []


def test_get_status_parses_unix_timestamp_and_error(make_client, provider):
    provider.reply(
        Reply(
            200,
            {
                "id": "msg_9",
                "status": "FAILED",
                "to": "+15550001",
                "timestamp": 1714564800,
                "error": {"code": "unreachable", "message": "Handset is off."},
            },
        )
    )

    status = make_client().get_status("msg_9")

    assert status == MessageStatus(
        id="msg_9",
        status="failed",
        to="+15550001",
        timestamp=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        error="Handset is off.",
    )
    assert provider.requests[0].method == "GET"


def test_get_status_quotes_the_message_id(make_client, provider):
    make_client().get_status("a/b c?d")

    assert provider.requests[0].path == "/messages/a%2Fb%20c%3Fd"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        (1714564800.5, datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("1714564800", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
    ],
)
def test_status_timestamps_become_aware_datetimes(
    make_client, provider, value, expected
):
    provider.reply(Reply(200, {"id": "msg_1", "timestamp": value}))

    status = make_client().get_status("msg_1")

    assert status.timestamp == expected
    if expected is not None:
        assert status.timestamp.tzinfo is not None


def test_missing_optional_fields_are_tolerated(make_client, provider):
    provider.reply(Reply(201, {"id": "msg_1"}))

    message = make_client().send_message("+15550001", "hi")

    assert (message.id, message.status, message.to, message.created_at) == (
        "msg_1",
        None,
        None,
        None,
    )


def test_answer_without_id_is_invalid(make_client, provider):
    provider.reply(Reply(201, {"status": "queued"}))

    with pytest.raises(InvalidResponse, match="id"):
        make_client().send_message("+15550001", "hi")


def test_answer_that_is_not_json_is_invalid(make_client, provider):
    provider.reply(Reply(200, "<html>maintenance</html>"))

    with pytest.raises(InvalidResponse, match="not JSON"):
        make_client().get_status("msg_1")


# Errors that are not retried


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_raises_authentication_error_without_retry(
    make_client, provider, sleep, status
):
    provider.respond_with(lambda request: Reply(status, {"error": "Bad key."}))

    with pytest.raises(AuthenticationError) as caught:
        make_client().send_message("+15550001", "hi")

    assert caught.value.status == status
    assert len(provider.requests) == 1
    assert sleep.delays == []


def test_unknown_message_raises_not_found(make_client, provider):
    provider.reply(Reply(404, {"error": "No message msg_x."}))

    with pytest.raises(NotFoundError) as caught:
        make_client().get_status("msg_x")

    assert caught.value.message == "No message msg_x."
    assert len(provider.requests) == 1


def test_bad_request_is_not_retried_and_keeps_provider_message(
    make_client, provider, sleep
):
    provider.respond_with(
        lambda request: Reply(400, {"error": {"message": "Invalid number."}})
    )

    with pytest.raises(APIError) as caught:
        make_client().send_message("+1", "hi")

    assert type(caught.value) is APIError
    assert (caught.value.status, caught.value.message) == (400, "Invalid number.")
    assert "Invalid number." in str(caught.value)
    assert len(provider.requests) == 1
    assert sleep.delays == []


def test_redirect_is_not_followed(make_client, provider):
    provider.reply(Reply(302, None, headers={"Location": "/elsewhere"}))

    with pytest.raises(APIError) as caught:
        make_client().send_message("+15550001", "hi")

    assert caught.value.status == 302
    assert len(provider.requests) == 1


def test_client_errors_are_not_gateway_errors():
    assert not issubclass(ClientError, GatewayError)
    assert issubclass(RequestTimeout, TimeoutError)


# Retries


def test_rate_limit_waits_for_retry_after_then_succeeds(make_client, provider, sleep):
    provider.reply(Reply(429, {"error": "Slow down."}, headers={"Retry-After": "3"}))

    message = make_client().send_message("+15550001", "hi")

    assert message.id == "msg_2"
    assert sleep.delays == [3.0]
    assert len(provider.requests) == 2


def test_retry_after_as_http_date_is_honoured(make_client, provider, sleep):
    when = formatdate(FIXED_NOW + 7, usegmt=True)
    provider.reply(Reply(503, None, headers={"Retry-After": when}))

    make_client().send_message("+15550001", "hi")

    assert sleep.delays == [7.0]


def test_retry_after_beyond_the_cap_raises_without_waiting(
    make_client, provider, sleep
):
    too_long = str(int(MAX_RETRY_AFTER_SECONDS) + 1)
    provider.reply(Reply(429, {"error": "Quota spent."}, {"Retry-After": too_long}))

    with pytest.raises(RateLimitError) as caught:
        make_client().send_message("+15550001", "hi")

    assert caught.value.retry_after == MAX_RETRY_AFTER_SECONDS + 1
    assert sleep.delays == []
    assert len(provider.requests) == 1


def test_persistent_rate_limit_raises_with_retry_after(make_client, provider, sleep):
    provider.respond_with(lambda request: Reply(429, None, {"Retry-After": "1"}))

    with pytest.raises(RateLimitError) as caught:
        make_client(retries=2).send_message("+15550001", "hi")

    assert caught.value.retry_after == 1.0
    assert sleep.delays == [1.0, 1.0]
    assert len(provider.requests) == 3


def test_server_error_then_success_is_retried(make_client, provider, sleep):
    provider.reply(Reply(500, {"error": "Oops."}))

    message = make_client().send_message("+15550001", "hi")

    assert message.id == "msg_2"
    assert len(sleep.delays) == 1


def test_persistent_server_error_exhausts_four_attempts(make_client, provider, sleep):
    provider.respond_with(lambda request: Reply(500, {"error": "Down."}))

    with pytest.raises(APIError) as caught:
        make_client(retries=3).send_message("+15550001", "hi")

    assert caught.value.status == 500
    assert len(provider.requests) == 4
    assert len(sleep.delays) == 3


def test_backoff_doubles_from_half_a_second_up_to_the_cap(make_client, provider, sleep):
    provider.respond_with(lambda request: Reply(502, None))
    client = make_client(retries=5, max_backoff_seconds=3, rng=UpperBoundRandom())

    with pytest.raises(APIError):
        client.get_status("msg_1")

    assert sleep.delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_fully_jittered_below_each_ceiling(make_client, provider, sleep):
    provider.respond_with(lambda request: Reply(503, None))
    client = make_client(retries=4, rng=random.Random(4))

    with pytest.raises(APIError):
        client.get_status("msg_1")

    ceilings = [0.5, 1.0, 2.0, 4.0]
    assert all(0 <= d <= c for d, c in zip(sleep.delays, ceilings, strict=True))
    assert sleep.delays != ceilings


def test_idempotency_key_is_the_same_on_every_retry(make_client, provider):
    provider.reply(Reply(500, None), Reply(429, None, {"Retry-After": "0"}))

    message = make_client().send_message("+15550001", "hi")

    keys = {request.headers["idempotency-key"] for request in provider.requests}
    assert len(provider.requests) == 3
    assert keys == {message.idempotency_key}
    assert uuid.UUID(message.idempotency_key).version == 4


def test_each_send_gets_its_own_idempotency_key(make_client, provider):
    client = make_client()
    client.send_message("+15550001", "one")
    client.send_message("+15550001", "two")

    first, second = (
        request.headers["idempotency-key"] for request in provider.requests
    )
    assert first != second


def test_caller_supplied_idempotency_key_is_sent(make_client, provider):
    make_client().send_message("+15550001", "hi", idempotency_key="order-42")

    assert provider.requests[0].headers["idempotency-key"] == "order-42"


def test_slow_answer_raises_request_timeout(make_client, provider):
    provider.respond_with(lambda request: Reply(200, {"id": "m"}, hold_seconds=1.0))
    client = make_client(timeout=0.2, retries=0)

    started = time.monotonic()
    with pytest.raises(RequestTimeout) as caught:
        client.get_status("msg_1")

    assert time.monotonic() - started < 0.9
    assert isinstance(caught.value.__cause__, requests.Timeout)


def test_timeout_is_retried(make_client, provider, sleep):
    provider.reply(Reply(200, {"id": "late"}, hold_seconds=1.0))

    status = make_client(timeout=0.2, retries=1).get_status("msg_1")

    assert status.id == "msg_1"
    assert len(sleep.delays) == 1


def test_refused_connection_raises_after_retries(sleep):
    client = IntegrationClient(
        API_KEY, f"http://127.0.0.1:{closed_port()}", retries=2, sleep=sleep
    )

    with client, pytest.raises(ConnectionFailed) as caught:
        client.send_message("+15550001", "hi")

    assert len(sleep.delays) == 2
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_sequential_requests_reuse_one_pooled_connection(make_client, provider):
    client = make_client()
    client.send_message("+15550001", "one")
    client.get_status("msg_1")

    assert len({request.client_port for request in provider.requests}) == 1


# Batches


def batch_responder(request: RecordedRequest) -> Reply:
    """Answer by recipient: ``+404`` is unknown, ``+500`` always fails."""
    to = request.json()["to"]
    if to == "+404":
        return Reply(404, {"error": "Unknown recipient."})
    if to == "+500":
        return Reply(500, {"error": "Down."})
    return Reply(201, {"id": f"id{to}", "status": "queued", "to": to})


def test_batch_reports_mixed_outcomes_in_input_order(make_client, provider):
    provider.respond_with(batch_responder)
    messages = [
        {"to": "+1", "content": "a"},
        {"to": "+404", "content": "b"},
        {"to": "+2", "content": "c", "type": "media"},
        {"to": "+500", "content": "d"},
        {"to": "+3", "content": "e", "metadata": {"k": 1}},
    ]

    batch = make_client(retries=1).send_batch(messages, max_workers=3)

    assert isinstance(batch, BatchResult)
    assert (batch.succeeded, batch.failed) == (3, 2)
    assert [result.index for result in batch.results] == [0, 1, 2, 3, 4]
    assert [result.ok for result in batch.results] == [True, False, True, False, True]
    assert [r.message.id for r in batch.results if r.ok] == ["id+1", "id+2", "id+3"]
    assert isinstance(batch.results[1].error, NotFoundError)
    assert isinstance(batch.results[3].error, APIError)
    assert batch.results[3].error.status == 500


def test_batch_sends_concurrently_within_the_worker_bound(make_client, provider):
    lock = threading.Lock()
    in_flight = [0]
    peak = [0]
    pair_up = threading.Barrier(2, timeout=3)

    def responder(request: RecordedRequest) -> Reply:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        # Two requests can only pass the barrier together, which proves the
        # batch really overlaps them.
        pair_up.wait()
        with lock:
            in_flight[0] -= 1
        return Reply(201, {"id": "m"})

    provider.respond_with(responder)
    messages = [{"to": f"+{n}", "content": "x"} for n in range(6)]

    batch = make_client(retries=0).send_batch(messages, max_workers=2)

    assert batch.succeeded == 6
    assert peak[0] == 2


def test_malformed_batch_sends_nothing(make_client, provider):
    messages = [{"to": "+1", "content": "a"}, {"to": "+2", "content": "b", "type": "x"}]

    with pytest.raises(ValueError, match="Batch message 1"):
        make_client().send_batch(messages)

    assert provider.requests == []


def test_empty_batch_is_an_empty_result(make_client):
    batch = make_client().send_batch([])

    assert (batch.succeeded, batch.failed, batch.results) == (0, 0, ())


# The on_sent hook


def test_on_sent_hook_receives_each_sent_message(make_client):
    seen: list[SentMessage] = []
    client = make_client(on_sent=seen.append)

    message = client.send_message("+15550001", "hi")

    assert seen == [message]


def test_failing_on_sent_hook_does_not_break_the_send(make_client, caplog):
    def broken_hook(message: SentMessage) -> None:
        raise RuntimeError("tracker down")

    client = make_client(on_sent=broken_hook)

    with caplog.at_level(logging.ERROR, logger="gateway.client"):
        message = client.send_message("+15550001", "hi")

    assert message.id == "msg_1"
    (record,) = caplog.records
    assert record.message_id == "msg_1"
    # The traceback is logged; once an app has configured logging, the
    # redaction filter has already turned exc_info into exc_text.
    assert record.exc_info is not None or "tracker down" in (record.exc_text or "")


# Logging and redaction


def test_debug_logs_describe_each_attempt(make_client, provider, caplog):
    client = make_client(debug=True)

    with caplog.at_level(logging.DEBUG, logger="gateway.client"):
        client.send_message("+15550001", "hi")

    (record,) = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert record.method == "POST"
    assert record.url == f"{provider.url}/messages"
    assert record.status == 201
    assert record.duration_ms >= 0
    assert record.request_bytes == len(provider.requests[0].body)
    assert record.response_bytes > 0


def test_without_debug_nothing_is_logged(make_client, caplog):
    with caplog.at_level(logging.DEBUG, logger="gateway.client"):
        make_client().send_message("+15550001", "hi")

    assert caplog.records == []


def test_api_key_never_appears_in_logs(make_client, provider, caplog):
    provider.reply(Reply(500, {"error": f"key {API_KEY} is throttled"}))
    client = make_client(debug=True)

    with caplog.at_level(logging.DEBUG, logger="gateway.client"):
        client.send_message("+15550001", "hi")
        provider.reply(Reply(404, {"error": f"No message for key {API_KEY}."}))
        with pytest.raises(NotFoundError):
            client.get_status("missing-id")

    assert len(caplog.records) >= 3
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(vars(record))


def test_api_key_echoed_by_provider_is_redacted_from_errors(make_client, provider):
    provider.reply(Reply(401, {"error": f"Key {API_KEY} was revoked."}))

    with pytest.raises(AuthenticationError) as caught:
        make_client().send_message("+15550001", "hi")

    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert API_KEY not in caught.value.message
    assert "[redacted]" in caught.value.message


def test_api_key_absent_from_transport_errors(sleep):
    client = IntegrationClient(
        API_KEY, f"http://127.0.0.1:{closed_port()}", retries=0, sleep=sleep
    )

    with client, pytest.raises(ConnectionFailed) as caught:
        client.get_status("msg_1")

    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)


def test_repr_shows_that_a_key_is_set_but_not_the_key(make_client):
    client = make_client()

    assert API_KEY not in repr(client)
    assert "api_key=[redacted]" in repr(client)
    assert API_KEY not in repr(vars(client))


# Construction


def test_from_env_reads_key_and_url(provider):
    environ = {"INTEGRATION_API_KEY": API_KEY, "INTEGRATION_API_URL": provider.url}

    with IntegrationClient.from_env(environ, retries=0) as client:
        client.send_message("+15550001", "hi")

    assert client.base_url == provider.url
    assert client.retries == 0
    assert provider.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("missing", ["INTEGRATION_API_KEY", "INTEGRATION_API_URL"])
def test_from_env_names_the_missing_variable(missing):
    environ = {
        "INTEGRATION_API_KEY": API_KEY,
        "INTEGRATION_API_URL": "http://127.0.0.1:1",
    }
    environ[missing] = ""

    with pytest.raises(ConfigError, match=missing):
        IntegrationClient.from_env(environ)


@pytest.mark.parametrize(
    "base_url",
    [
        "127.0.0.1:8000",
        "ftp://127.0.0.1",
        "http://user:pw@127.0.0.1",
        "http://127.0.0.1/?token=abc",
    ],
)
def test_malformed_base_url_is_refused(base_url):
    with pytest.raises(ValueError, match="base URL"):
        IntegrationClient(API_KEY, base_url)


def test_base_url_trailing_slash_is_dropped(make_client, provider):
    client = make_client(base_url=f"{provider.url}/")

    client.get_status("msg_1")

    assert client.base_url == provider.url
    assert provider.requests[0].path == "/messages/msg_1"


def test_empty_api_key_is_refused():
    with pytest.raises(ValueError, match="API key"):
        IntegrationClient(" ", "http://127.0.0.1:1")
