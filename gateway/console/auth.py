"""Who may use the console: credentials, the session cookie and CSRF.

The console accepts a bearer token (``Authorization: Bearer``, or typed
once into the sign-in form, which then keeps a session cookie) and HTTP
basic auth; which of them is on depends on the configured credentials.
Every comparison of a credential is constant-time.

The session cookie is signed with a key derived (scrypt) from the
credentials, so every worker and host that shares them accepts it,
changing a credential ends every session, and a stolen cookie cannot
cheaply be turned back into the credentials. It is ``HttpOnly``,
``SameSite=Strict`` and limited to ``/console``; it also carries the
CSRF token that every POST form must echo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..config import Settings

COOKIE_NAME = "gateway_console"
COOKIE_PATH = "/console"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"
_KEY_SALT = b"gateway-console-session-v1"


@dataclass
class ConsoleSession:
    """The console's state for one browser, kept in the signed cookie."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    signed_in: bool = False
    notice: str | None = None
    changed: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The cookie's content."""
        content: dict[str, Any] = {"csrf": self.csrf, "in": self.signed_in}
        if self.notice:
            content["notice"] = self.notice
        return content


class ConsoleAuth:
    """Checks credentials and reads and writes the session cookie."""

    def __init__(self, settings: Settings):
        self.token = settings.console_token
        self.user = settings.console_user
        self.password = settings.console_password
        self.secure_cookie = settings.is_production
        material = "\0".join(
            part or "" for part in (self.token, self.user, self.password)
        )
        # Derived once per process; scrypt makes an offline guess from a
        # captured cookie's signature expensive.
        key = hashlib.scrypt(
            material.encode(), salt=_KEY_SALT, n=2**14, r=8, p=1, dklen=32
        )
        self._serializer = URLSafeTimedSerializer(key, salt="console-session")

    @property
    def uses_token(self) -> bool:
        """Whether a bearer token is configured (enables the sign-in form)."""
        return self.token is not None

    @property
    def uses_basic(self) -> bool:
        """Whether basic auth is configured."""
        return self.password is not None

    def check_authorization(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries valid credentials."""
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return self.check_token(value.strip())
        if scheme == "basic" and self.user and self.password:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, separator, password = decoded.partition(":")
            if not separator:
                return False
            # Both halves are always compared, so the time taken does not
            # tell which one was wrong.
            user_ok = _same(user, self.user)
            password_ok = _same(password, self.password)
            return user_ok and password_ok
        return False

    def check_token(self, candidate: str) -> bool:
        """Whether ``candidate`` is the configured token (constant-time)."""
        return self.token is not None and _same(candidate, self.token)

    def load(self, cookie: str | None) -> ConsoleSession:
        """Read the session cookie; a missing or bad one gives a new session."""
        if cookie:
            try:
                content = self._serializer.loads(cookie, max_age=SESSION_SECONDS)
            except BadSignature:
                content = None
            if isinstance(content, dict) and isinstance(content.get("csrf"), str):
                return ConsoleSession(
                    csrf=content["csrf"],
                    signed_in=content.get("in") is True,
                    notice=content.get("notice"),
                    changed=False,
                )
        return ConsoleSession()

    def dump(self, session: ConsoleSession) -> str:
        """Sign a session for the cookie."""
        return self._serializer.dumps(session.as_dict())

    def check_csrf(self, session: ConsoleSession, submitted: str | None) -> bool:
        """Whether a submitted form token matches the session's (constant-time)."""
        return bool(submitted) and _same(submitted or "", session.csrf)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
