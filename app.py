"""The WSGI entry point: ``gunicorn app:app``."""

from gateway.web import create_app_or_exit

app = create_app_or_exit()
