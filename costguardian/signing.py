"""Everything signed with SECRET_KEY accepts the keys in SECRET_KEY_FALLBACKS
too, so the key can be rotated without signing everyone out.

Flask's session cookie reads SECRET_KEY_FALLBACKS itself (Flask 3.1). The
others need telling: Flask-WTF's CSRF tokens (WTF_CSRF_SECRET_KEY, set here
to the list of keys), Flask-Login's remember-me cookie (RotatingLoginManager)
and our own itsdangerous tokens (`serializer`: unsubscribe and email
verification links). New signatures always use SECRET_KEY; the fallbacks
only verify (docs/OPERATIONS.md "Rotating SECRET_KEY").
"""
from __future__ import annotations

from flask import Flask, current_app
from flask_login import LoginManager
from flask_login.utils import decode_cookie, encode_cookie
from itsdangerous import URLSafeTimedSerializer


def secret_keys(config=None) -> list[str]:
    """The fallbacks then SECRET_KEY: itsdangerous's order, oldest to newest
    (the last one signs)."""
    config = current_app.config if config is None else config
    return [*(config.get("SECRET_KEY_FALLBACKS") or []), config["SECRET_KEY"]]


def serializer(salt: str) -> URLSafeTimedSerializer:
    """Signs with SECRET_KEY, verifies with it or any fallback."""
    return URLSafeTimedSerializer(secret_keys(), salt=salt)


def init_app(app: Flask) -> None:
    if app.config.get("SECRET_KEY_FALLBACKS"):
        # Flask-WTF signs with the last key of a list and verifies with any.
        app.config["WTF_CSRF_SECRET_KEY"] = secret_keys(app.config)


class RotatingLoginManager(LoginManager):
    """Flask-Login 0.6 checks the remember-me cookie against SECRET_KEY only."""

    def _load_user_from_remember_cookie(self, cookie):
        if decode_cookie(cookie) is None:
            for old_key in current_app.config.get("SECRET_KEY_FALLBACKS") or []:
                user_id = decode_cookie(cookie, key=old_key)
                if user_id is not None:
                    cookie = encode_cookie(user_id)  # as if signed with today's key
                    break
        return super()._load_user_from_remember_cookie(cookie)
