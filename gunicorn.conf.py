"""gunicorn settings for the gateway (read by ``gunicorn app:app``).

Each worker process runs its own dispatcher thread; these hooks start it
after the worker boots and stop it gracefully when the worker exits, so
claimed events are finished or released within the graceful timeout.
Override any value on the command line or with GUNICORN_CMD_ARGS.

Metrics: every worker counts on its own, so prometheus_client's
multiprocess mode is switched on here, before any worker imports it.
Each server start gets a fresh directory (a temporary one, removed at
exit, unless PROMETHEUS_MULTIPROC_DIR names one, which is emptied), and
a worker that exits is marked dead so its gauges stop counting.
"""

import glob
import os
import shutil
import tempfile

# Set while this file is read, in the master, so that workers (and a
# preloaded app) inherit it. A reload (HUP) reads this file again and
# keeps the directory: the live workers' counts are still in it.
_METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_CREATED_MARKER = "GATEWAY_METRICS_DIR_CREATED"
if not os.environ.get(_METRICS_DIR_VARIABLE):
    _directory = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[_METRICS_DIR_VARIABLE] = _directory
    os.environ[_CREATED_MARKER] = _directory

bind = os.environ.get("GATEWAY_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let a slow client hold one thread, not a whole worker; the
# gateway's gthread worker also cuts any request that takes longer than
# ``timeout`` seconds to arrive and be answered (docs/security.md).
worker_class = "gateway.serving.DeadlineThreadWorker"
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
# No control socket: its default path in the home folder is shared by
# every gunicorn on the host.
control_socket_disable = True


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


def on_starting(server):
    # Counts of an earlier run must not be added to this one's.
    directory = os.environ[_METRICS_DIR_VARIABLE]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    created = os.environ.get(_CREATED_MARKER)
    if created and created == os.environ.get(_METRICS_DIR_VARIABLE):
        shutil.rmtree(created, ignore_errors=True)
