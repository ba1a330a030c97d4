"""A programmable stand-in for the provider's API, served on 127.0.0.1.

:class:`FakeProvider` runs a real HTTP/1.1 server in a background thread
so the outbound client is tested over real sockets. Each request is
recorded; its answer comes from, in order: the queue filled by
:meth:`FakeProvider.reply`, the function set with
:meth:`FakeProvider.respond_with`, or a default that accepts messages and
reports them as ``queued``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREATED_AT = "2024-05-01T12:00:00Z"
# Upper bound on how long the server holds a deliberately slow answer; the
# fixture releases held answers at teardown so tests never wait this long.
MAX_HOLD_SECONDS = 5.0


@dataclass(frozen=True)
class Reply:
    """One programmed answer: status, JSON or raw body, headers, hold time."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


class FakeProvider:
    """The provider's API on an ephemeral port of 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._responder: Callable[[RecordedRequest], Reply] | None = None
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The base URL clients should use."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held answers, stop serving and close the socket."""
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=MAX_HOLD_SECONDS)

    def reply(self, *replies: Reply) -> None:
        """Queue answers for the next requests, one each, in order."""
        with self._lock:
            self._queue.extend(replies)

    def respond_with(self, responder: Callable[[RecordedRequest], Reply]) -> None:
        """Answer requests the queue does not cover by calling ``responder``."""
        self._responder = responder

    def answer(self, request: RecordedRequest) -> Reply:
        """Record ``request`` and choose its answer."""
        with self._lock:
            self.requests.append(request)
            queued = self._queue.popleft() if self._queue else None
        if queued is not None:
            return queued
        if self._responder is not None:
            return self._responder(request)
        return default_reply(request, len(self.requests))

    def hold(self, seconds: float) -> None:
        """Delay an answer, ending early when the server is stopped."""
        self._released.wait(min(seconds, MAX_HOLD_SECONDS))


def default_reply(request: RecordedRequest, number: int) -> Reply:
    """Accept a message or report one as queued, as the provider would."""
    if request.method == "POST" and request.path == "/messages":
        sent = request.json()
        return Reply(
            201,
            {
                "id": f"msg_{number}",
                "status": "queued",
                "to": sent.get("to"),
                "created_at": CREATED_AT,
            },
        )
    if request.method == "GET" and request.path.startswith("/messages/"):
        return Reply(200, {"id": request.path.rsplit("/", 1)[1], "status": "queued"})
    return Reply(404, {"error": "No such resource."})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a held answer closes its socket; the
        # resulting broken pipe is expected and not worth printing.
        pass


def _make_handler(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = MAX_HOLD_SECONDS

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length),
                client_port=self.client_address[1],
            )
            reply = provider.answer(request)
            if reply.hold_seconds:
                provider.hold(reply.hold_seconds)
            if isinstance(reply.body, bytes):
                payload = reply.body
            elif isinstance(reply.body, str):
                payload = reply.body.encode("utf-8")
            elif reply.body is None:
                payload = b""
            else:
                payload = json.dumps(reply.body).encode("utf-8")
            self.send_response(reply.status)
            if reply.body is not None and not isinstance(reply.body, str | bytes):
                self.send_header("Content-Type", "application/json")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
