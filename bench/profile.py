"""Profile the request path and the dispatch path: ``python -m bench.profile``.

Builds the gateway in this process on a SQLite store in a temporary
folder (the no-op handler loaded, logs sent to a file as under gunicorn)
and runs, under pyinstrument:

- ``request``: signed, unique deliveries through the WSGI app, called
  directly with a prepared environ (no HTTP client in the profile);
- ``dispatch``: the dispatcher's passes over the events stored above.

The text report goes to stdout; ``--html FOLDER`` writes one page each.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .deliveries import SIGNATURE_HEADER, body, sign

SECRET = "bench-profile-secret"


def main(argv: list[str] | None = None) -> int:
    """Profile both paths; return 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--html", help="folder for the HTML reports")
    parser.add_argument(
        "--interval", type=float, default=0.0002, help="sampling interval, seconds"
    )
    options = parser.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pip install pyinstrument (see requirements.txt)", file=sys.stderr)
        return 2
    from gateway import create_app

    folder = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    app = create_app(
        {
            "GATEWAY_ENV": "production",
            "INTEGRATION_SECRET_KEY": SECRET,
            "GATEWAY_HANDLERS": "bench.noop_handler",
            "GATEWAY_DATA_DIR": str(folder),
            "GATEWAY_DATABASE_URL": f"sqlite:///{folder / 'events.db'}",
            "GATEWAY_DISPATCHER": "0",
            "RATELIMIT_DEFAULT": "987654 per second",
        }
    )
    _send_logs_to(folder / "gateway.log")
    gateway = app.extensions["gateway"]
    environs = [_environ(index) for index in range(options.requests + 50)]
    for environ in environs[:50]:
        _call(app, environ)

    profiler = Profiler(interval=options.interval)
    profiler.start()
    for environ in environs[50:]:
        _call(app, environ)
    profiler.stop()
    _report("request", profiler, options.html)

    profiler = Profiler(interval=options.interval)
    profiler.start()
    handled = gateway.dispatcher.run_until_idle(max_passes=10_000)
    profiler.stop()
    print(f"dispatched {handled} events")
    _report("dispatch", profiler, options.html)
    return 0


def _environ(index: int) -> dict[str, Any]:
    payload = body(f"evt_profile_{os.getpid()}_{index:07d}")
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/webhooks/integration",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(payload)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench-profile",
        "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_"): sign(SECRET, payload),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "bench.body": payload,
    }


def _call(app: Any, environ: dict[str, Any]) -> None:
    ready = dict(environ)
    ready["wsgi.input"] = io.BytesIO(environ["bench.body"])
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    for _ in app(ready, start_response):
        pass
    if not statuses or not statuses[0].startswith("202"):
        raise RuntimeError(f"unexpected answer {statuses}")


def _send_logs_to(path: Path) -> None:
    """Point the gateway's log handler at a file, as gunicorn's stderr is."""
    stream = path.open("a")
    for handler in logging.getLogger("gateway").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


def _report(name: str, profiler: Any, html_folder: str | None) -> None:
    print(f"===== {name} path =====")
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    if html_folder:
        target = Path(html_folder)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{name}.html").write_text(profiler.output_html())


if __name__ == "__main__":
    sys.exit(main())
