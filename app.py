"""The WSGI entry point: ``gunicorn app:app``."""

from gateway import create_app

app = create_app()
