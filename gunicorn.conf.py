"""gunicorn settings for the gateway (read by ``gunicorn app:app``).

Each worker process runs its own dispatcher thread; these hooks start it
after the worker boots and stop it gracefully when the worker exits, so
claimed events are finished or released within the graceful timeout.
Override any value on the command line or with GUNICORN_CMD_ARGS.
"""

import os

bind = os.environ.get("GATEWAY_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let a slow client hold one thread, not a whole worker.
worker_class = "gthread"
threads = int(os.environ.get("GATEWAY_THREADS", "4"))
timeout = 30
graceful_timeout = 25
keepalive = 5
# Bound what one request may send before the app sees it.
limit_request_line = 8190
limit_request_fields = 200
limit_request_field_size = 16384
# The access log shows the path without its query string, never a secret.
accesslog = os.environ.get("GATEWAY_ACCESS_LOG", "-") or None
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"


def _gateway(worker):
    application = getattr(worker, "wsgi", None)
    extensions = getattr(application, "extensions", {})
    return extensions.get("gateway")


def post_worker_init(worker):
    gateway = _gateway(worker)
    if gateway is not None and gateway.settings.dispatcher_enabled:
        gateway.dispatcher.start()


def worker_exit(server, worker):
    gateway = _gateway(worker)
    if gateway is not None:
        gateway.dispatcher.stop(timeout_seconds=max(graceful_timeout - 5, 1))
