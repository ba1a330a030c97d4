"""Who may use the console: the request guard, sign-in and sign-out.

:func:`protect` wires a blueprint so that each request passes
:func:`_guard` first: no page, JSON endpoint or form answers without
valid credentials, and every POST must carry the session's CSRF token
and come from this origin (issue 9). After each request the session
cookie is written and the security headers are set; store failures,
rate limits and HTTP errors answer with the console's error page.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    redirect,
    request,
    url_for,
)
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from ..errors import StoreError
from ..limiter import client_ip
from .auth import (
    COOKIE_NAME,
    COOKIE_PATH,
    CSRF_FIELD,
    SESSION_SECONDS,
    ConsoleSession,
)
from .render import error_page, render_page
from .state import ConsoleState, console_state

logger = logging.getLogger(__name__)

LOGIN_LIMIT = "10 per minute"
_PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self';"
        " img-src 'self'; connect-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def protect(blueprint: Blueprint, limiter: Limiter) -> None:
    """Guard every route of ``blueprint`` and add ``/login`` and ``/logout``.

    :param limiter: the app's limiter; sign-in attempts are limited per
        client IP with it.
    """
    blueprint.before_request(_guard)
    blueprint.after_request(_finish)
    blueprint.register_error_handler(StoreError, _store_error)
    blueprint.register_error_handler(RateLimitExceeded, _rate_limited)
    blueprint.register_error_handler(HTTPException, _http_error)
    blueprint.add_url_rule("/logout", view_func=logout, methods=["POST"])
    limited_login = limiter.limit(LOGIN_LIMIT, key_func=client_ip, methods=["POST"])(
        login
    )
    blueprint.add_url_rule("/login", view_func=limited_login, methods=["GET", "POST"])


def login() -> BaseResponse | str | tuple[str, int]:
    """The sign-in form for the bearer token; sets the session cookie."""
    auth = console_state().auth
    target = _safe_next(request.values.get("next"))
    if not auth.uses_token:
        return redirect(target, code=303)
    if request.method == "GET":
        if g.console_signed_in:
            return redirect(target, code=303)
        return render_page("login.html", next=target, error=None)
    if not auth.check_token(request.form.get("token", "")):
        logger.warning("console sign-in refused", extra={"client_ip": client_ip()})
        return render_page(
            "login.html", next=target, error="This token is not valid."
        ), 401
    # A new session, with a new CSRF token, so nothing chosen before the
    # sign-in carries over.
    g.console_session = ConsoleSession(signed_in=True)
    g.console_cookie = True
    logger.info("console sign-in", extra={"client_ip": client_ip()})
    return redirect(target, code=303)


def logout() -> BaseResponse:
    """End the cookie session (basic auth ends when the browser forgets it)."""
    g.console_session = ConsoleSession(signed_in=False)
    return redirect(url_for("console.login"), code=303)


def _guard() -> BaseResponse | tuple[str, int] | None:
    state = console_state()
    session = state.auth.load(request.cookies.get(COOKIE_NAME))
    g.console_session = session
    g.console_signed_in = session.signed_in or state.auth.check_authorization(
        request.headers.get("Authorization")
    )
    public = request.endpoint in _PUBLIC_ENDPOINTS
    g.console_cookie = g.console_signed_in or request.endpoint == "console.login"
    if not public and not g.console_signed_in:
        return _challenge(state)
    if request.method == "POST" and not _is_genuine_form(state, session):
        logger.warning(
            "console form refused: no valid CSRF token",
            extra={"client_ip": client_ip(), "path": request.path},
        )
        return error_page(
            403,
            "Form refused",
            "This form was not sent from a console page. Reload the page and try"
            " again.",
        )
    return None


def _is_genuine_form(state: ConsoleState, session: ConsoleSession) -> bool:
    # A browser names the page a form came from; another site is refused
    # even before the token is checked.
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        expected = urlsplit(request.host_url)
        sent = urlsplit(origin)
        if (sent.scheme, sent.netloc) != (expected.scheme, expected.netloc):
            return False
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    return state.auth.check_csrf(session, request.form.get(CSRF_FIELD))


def _challenge(state: ConsoleState) -> BaseResponse | tuple[str, int]:
    if state.auth.uses_token and not request.path.startswith("/console/api/"):
        if not state.auth.uses_basic:
            return redirect(
                url_for("console.login", next=request.full_path.rstrip("?")),
                code=303,
            )
    response = current_app.make_response(
        error_page(
            401,
            "Sign-in required",
            "The console needs the operator's credentials.",
            login=state.auth.uses_token,
        )
    )
    if state.auth.uses_basic:
        response.headers["WWW-Authenticate"] = (
            'Basic realm="Gateway console", charset="UTF-8"'
        )
    return response


def _finish(response: Response) -> Response:
    session: ConsoleSession | None = g.get("console_session")
    if session is not None and session.changed and g.get("console_cookie"):
        response.set_cookie(
            COOKIE_NAME,
            console_state().auth.dump(session),
            max_age=SESSION_SECONDS,
            path=COOKIE_PATH,
            secure=console_state().auth.secure_cookie,
            httponly=True,
            samesite="Strict",
        )
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _store_error(error: StoreError) -> tuple[str, int]:
    logger.error("console could not read the event store", exc_info=error)
    return error_page(
        503, "Store unavailable", "The event store cannot be reached; retry shortly."
    )


def _rate_limited(_: RateLimitExceeded) -> tuple[str, int]:
    return error_page(
        429, "Too many attempts", "Too many sign-in attempts; wait a minute."
    )


def _http_error(error: HTTPException) -> tuple[str, int]:
    status = error.code or 500
    if status == 404:
        return error_page(404, "Not found", "There is nothing at this address.")
    if status == 405:
        return error_page(405, "Not allowed", "This address does not take that.")
    return error_page(status, "Request refused", "The request could not be read.")


def _safe_next(target: str | None) -> str:
    # Only a path inside the console, so the sign-in form is no open redirect.
    if target and target.startswith("/console") and not target.startswith("//"):
        if "\\" not in target and "//" not in target and target.isprintable():
            return target
    return url_for("console.overview")
