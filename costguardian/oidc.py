"""The "Sign in with Google" client: Authlib's OIDC client for any issuer
(OIDC_SERVER_METADATA_URL, Google's by default)."""
from __future__ import annotations

from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app


def init_app(app: Flask) -> None:
    registry = OAuth(app)
    if app.config.get("GOOGLE_CLIENT_ID"):
        registry.register(
            "oidc",
            client_id=app.config["GOOGLE_CLIENT_ID"],
            client_secret=app.config.get("GOOGLE_CLIENT_SECRET"),
            server_metadata_url=app.config["OIDC_SERVER_METADATA_URL"],
            client_kwargs={"scope": "openid email profile"},
        )
    app.extensions["cg_oidc"] = registry


def client():
    """The configured client, or None when OIDC sign-in is not set up."""
    return current_app.extensions["cg_oidc"].create_client("oidc")
