"""Cost Guardian: see, attribute, forecast and cap what an organization spends on AI APIs."""
from __future__ import annotations

import os
from itertools import chain
from pathlib import Path

from flask import Flask, request
from flask.globals import request_ctx
from flask.sessions import SecureCookieSessionInterface
from jinja2 import ChoiceLoader, FileSystemLoader
from werkzeug.middleware.proxy_fix import ProxyFix

from costguardian import clock, config as settings, signing
from costguardian.db import connect_database
from costguardian.extensions import csrf, db, htmx, limiter, login_manager

PACKAGE_DIR = Path(__file__).resolve().parent
_databases: dict[str, object] = {}
GATEWAY_PATHS = ("/v1/", "/anthropic/")
GATEWAY_BLUEPRINT = "gateway"


class _SessionInterface(SecureCookieSessionInterface):
    """Signed cookie sessions, except on the gateway's paths: an SDK's call
    has no browser session, so none is read or written (a null session)."""

    def open_session(self, app, request):
        if request.path.startswith(GATEWAY_PATHS):
            return None  # Flask makes it a null session, which it never saves
        return super().open_session(app, request)


def for_gateway_calls(hook):
    """Mark an app-wide before/after_request hook that also runs for the
    gateway's calls (CostGuardianApp)."""
    hook.for_gateway_calls = True
    return hook


class CostGuardianApp(Flask):
    """Flask, with the gateway's calls passing by the app-wide hooks that
    only signed-in pages need (sessions, impersonation, the organization
    chosen in the session, CSRF, "last seen", the sign-in limiter's headers,
    the remember-me cookie): a call is authenticated by its key in the view
    (views.gateway) and answers in its provider's format. Those hooks were
    about a tenth of a gateway call's CPU (docs/PERFORMANCE.md). The hooks
    marked `for_gateway_calls` (the database connection, the request line,
    the 5xx count, the security headers) and the gateway blueprint's own
    still run, in Flask's order."""

    session_interface = _SessionInterface()

    def preprocess_request(self):
        if request.blueprint != GATEWAY_BLUEPRINT:
            return super().preprocess_request()
        for name in (None, GATEWAY_BLUEPRINT):
            for hook in self.before_request_funcs.get(name, ()):
                if name is not None or getattr(hook, "for_gateway_calls", False):
                    answer = hook()
                    if answer is not None:
                        return answer
        return None

    def process_response(self, response):
        if request.blueprint != GATEWAY_BLUEPRINT:
            return super().process_response(response)
        for hook in request_ctx._after_request_functions:
            response = hook(response)
        for name in chain((GATEWAY_BLUEPRINT,), (None,)):
            for hook in reversed(self.after_request_funcs.get(name, ())):
                if name is not None or getattr(hook, "for_gateway_calls", False):
                    response = hook(response)
        return response  # the session is a null session (_SessionInterface): nothing to save


def create_app(test_config: dict | None = None) -> Flask:
    """Defaults, then the environment, then the test's overrides."""
    app = CostGuardianApp(
        __name__,
        instance_path=os.environ.get("CG_INSTANCE_PATH") or str(settings.PROJECT_ROOT / "instance"),
        static_folder=str(settings.PROJECT_ROOT / "static"),
    )
    config = settings.from_environ()
    config.update(test_config or {})
    settings.finalize(config, app.instance_path)
    app.config.update(config)
    app.extensions["costguardian.started_at"] = clock.now()  # uptime on the system health page
    _configure_security(app)
    signing.init_app(app)  # CSRF tokens honour SECRET_KEY_FALLBACKS

    # Pages live in templates/, htmx fragments in partials/<area>/_name.html.
    app.jinja_loader = ChoiceLoader([FileSystemLoader(str(PACKAGE_DIR / "templates")),
                                     FileSystemLoader(str(PACKAGE_DIR))])

    db.initialize(_database_for(app.config["DATABASE_URL"]))
    login_manager.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)
    _limiter_skips_gateway(app)
    if app.config["CG_TRUSTED_PROXIES"]:
        n = app.config["CG_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)

    from costguardian import cli, observability, oidc, web
    from costguardian.views import register_blueprints

    observability.init_app(app)  # logs, request ids, metrics, Sentry (before web: its request hook runs last)
    web.init_app(app)  # first: the sign-in guard runs before CSRF and the views
    csrf.init_app(app)
    oidc.init_app(app)
    register_blueprints(app)
    cli.init_app(app)
    return app



def _limiter_skips_gateway(app: Flask) -> None:
    """Flask-Limiter looks for limits on every request in a before_request
    hook (4% of a gateway call's CPU under load), though only the sign-in and
    account views have any; the gateway's paths have their own limits
    (services/gateway/ratelimits), so the hook passes them by."""
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit not in hooks:  # (a bound method: equal to the one registered)
        return  # the limiter is off (RATELIMIT_ENABLED)
    index = hooks.index(limiter._check_request_limit)
    check = hooks[index]

    def check_request_limit():
        if request.path.startswith(GATEWAY_PATHS):
            return None
        return check()

    hooks[index] = check_request_limit


def _database_for(url: str):
    """One Database object per URL for the process, so that apps built by
    tests and by the queue consumer share connection pools."""
    if url not in _databases:
        _databases[url] = connect_database(url)
    return _databases[url]


def _configure_security(app: Flask) -> None:
    production = settings.is_production(app.config)
    # Flask's defaults already hold SESSION_COOKIE_NAME ("session"), so a
    # setdefault never applies; only a name the configuration chose is kept.
    if app.config.get("SESSION_COOKIE_NAME") in (None, Flask.default_config["SESSION_COOKIE_NAME"]):
        app.config["SESSION_COOKIE_NAME"] = "cg_session"
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=production,
        REMEMBER_COOKIE_DURATION=60 * 60 * 24 * 30,
        PREFERRED_URL_SCHEME="https" if production else "http",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=app.config.get("MAX_CONTENT_LENGTH") or 4 * 1024 * 1024,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_STORAGE_URI=app.config["RATELIMIT_STORAGE_URI"],
        # A sliding window: a fixed one lets up to twice the limit through
        # around the moment it starts afresh.
        RATELIMIT_STRATEGY="moving-window",
    )
