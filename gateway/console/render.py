"""Rendering the console's templates with the session's CSRF token and notice.

Every console page, the sign-in form included, goes through
:func:`render_page`; answers given before the session is known (the
guard's refusals, error handlers) use :func:`error_page`.
"""

from __future__ import annotations

from typing import Any

from flask import g, render_template

from .auth import CSRF_FIELD, ConsoleSession
from .state import console_state


def render_page(template: str, **context: Any) -> str:
    """Render ``console/<template>`` with the request's console session.

    Passes the session's CSRF token for forms and shows, once, the
    notice left by :func:`add_notice`.
    """
    session: ConsoleSession = g.console_session
    notice = session.notice
    if notice:
        session.notice = None
        session.changed = True
    return render_template(
        f"console/{template}",
        csrf_token=session.csrf,
        csrf_field=CSRF_FIELD,
        notice=notice,
        uses_token=console_state().auth.uses_token,
        **context,
    )


def add_notice(text: str) -> None:
    """Leave ``text`` for the next page the operator sees."""
    session: ConsoleSession = g.console_session
    session.notice = text
    session.changed = True


def error_page(
    status: int, title: str, message: str, *, login: bool = False
) -> tuple[str, int]:
    """Render the error page with ``status``; it carries no session data."""
    return (
        render_template(
            "console/error.html",
            title=title,
            message=message,
            login=login,
            csrf_token="",
            csrf_field=CSRF_FIELD,
            notice=None,
            uses_token=False,
        ),
        status,
    )
