"""Request plumbing: database connection per request, the sign-in guard,
security headers, error pages and template globals."""
from __future__ import annotations

import logging
import re

from flask import Flask, current_app, g, jsonify, make_response, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from costguardian import authz, for_gateway_calls, permissions, timefmt
from costguardian.config import is_production
from costguardian.extensions import db, htmx, login_manager
from costguardian.problems import type_url
from costguardian.rendering import toast
from costguardian.money import format_percent, format_usd
from costguardian.services.errors import NotFound
from costguardian.services.team import accounts

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

# Static files need no database; the probes open their own connection so that
# an outage answers 503 from /readyz rather than an error page. None of them
# loads the signed-in user either (authz.SESSIONLESS_ENDPOINTS).
_NO_DATABASE = authz.SESSIONLESS_ENDPOINTS

# The stable `type` of HTTP errors in the JSON API, whether a view or routing raised them.
PROBLEM_KINDS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large", 429: "rate-limited"}

ERROR_TITLES = {
    400: "Bad request", 401: "Sign in required", 403: "You don't have access", 404: "Not found",
    405: "Method not allowed", 409: "Not possible yet", 413: "Too large", 429: "Too many attempts",
    500: "Something went wrong",
}


def init_app(app: Flask) -> None:
    login_manager.user_loader(accounts.load_session_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @for_gateway_calls
    def _open_db():
        # Whether this thread already held a connection when the request began
        # (a test or task may hold its own, which stays theirs).
        g.db_was_open = not db.is_closed()
        if request.endpoint not in _NO_DATABASE and not g.db_was_open:
            db.connect()

    # First of all before_request hooks: the rate limiter's (registered earlier)
    # may load the user, and peewee connects on demand for any query.
    app.before_request_funcs.setdefault(None, []).insert(0, _open_db)

    @app.teardown_request
    def _close_db(exc):
        # Return whatever connection the request ended up holding: the one
        # opened above, or one peewee opened on demand (the user loaded for an
        # error page of a static file, ...). In a thread-per-request server a
        # connection left open is never returned to the pool.
        if not g.pop("db_was_open", True) and not db.is_closed():
            db.close()

    app.after_request(_count_server_error)
    app.before_request(authz.require_sign_in)
    app.before_request(authz.check_session)
    app.before_request(authz.apply_impersonation)
    app.before_request(authz.load_organization)
    app.after_request(authz.audit_impersonated_request)

    @app.after_request
    @for_gateway_calls
    def _security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if is_production(app.config):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        endpoint = request.endpoint
        if endpoint not in _NO_DATABASE and (getattr(app.view_functions.get(endpoint), "api_key_auth", False)
                                             or current_user.is_authenticated):
            # Private pages and API answers stay out of shared caches (an API key's
            # answer is private without loading a session's user).
            headers.setdefault("Cache-Control", "no-store")
        return response

    def _bell_unread() -> int:
        """The header bell's count, for full pages of an organization."""
        from costguardian.services.notifications import notify as notifications

        if g.get("org") is None or not current_user.is_authenticated:
            return 0
        return notifications.unread_count(g.org, current_user)

    def _billing_banner() -> str:
        """What owners and billing members must read about the subscription
        (payment failed, plan limits), on every page; "" for everyone else."""
        from costguardian.services.billing import banner

        if g.get("org") is None or not app.config.get("BILLING_ENABLED") or not authz.can("billing:manage"):
            return ""
        return banner(g.org)

    def _maintenance_banner():
        from costguardian.services.platform import settings

        return settings.maintenance_banner()

    def _admin_nav():
        """The console's sections this platform admin may open: (endpoint, label)."""
        return [(endpoint, label) for endpoint, label, level in ADMIN_NAV
                if endpoint in app.view_functions and authz.platform_can(level)]

    @app.context_processor
    def _globals():
        return {
            "can": authz.can,
            "current_org": g.get("org"),
            "current_membership": g.get("membership"),
            "memberships": g.get("memberships", []),
            "ROLES": permissions.roles_described(bool(app.config.get("BILLING_ENABLED"))),
            "oidc_enabled": bool(app.config.get("GOOGLE_CLIENT_ID")),
            "oidc_provider_name": app.config.get("OIDC_PROVIDER_NAME", "Google"),
            "bell_unread": _bell_unread,
            "billing_enabled": bool(app.config.get("BILLING_ENABLED")),
            "billing_banner": _billing_banner,
            "impersonation": g.get("impersonation"),
            "platform_can": authz.platform_can,
            "maintenance_banner": _maintenance_banner,
            "admin_nav": _admin_nav,
        }

    app.jinja_env.filters["usd"] = format_usd
    app.jinja_env.filters["percent"] = format_percent
    app.jinja_env.filters["org_time"] = format_org_time
    app.jinja_env.filters["utc_time"] = format_utc_time

    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    # A row a concurrent request deleted between the view's lookup and the change.
    app.register_error_handler(NotFound, lambda exc: error_response(404, exc.message))
    app.register_error_handler(Exception, _unexpected_error)


def format_org_time(value, precision: str = "minute", zone: str | None = None) -> str:
    """A stored (naive UTC) time in the current organization's time zone,
    the zone named after it: `2026-12-05 19:04 CET` (timefmt.format_time;
    precision "day", "minute" or "second"). Outside an organization: UTC."""
    org = g.get("org")
    return timefmt.format_time(value, zone or (org.time_zone if org else None), precision)


def format_utc_time(value, precision: str = "minute") -> str:
    """The same in UTC, for pages outside an organization (the platform
    console, account pages): `2026-12-05 18:04 UTC`."""
    return timefmt.format_time(value, None, precision)


# The platform console's sections, in order: (endpoint, label, platform level).
ADMIN_NAV = [
    ("admin_overview.index", "Overview", "read"),
    ("admin_users.index", "Users", "read"),
    ("admin_orgs.index", "Organizations", "read"),
    ("admin_usage.index", "Usage", "read"),
    ("admin_health.index", "System health", "read"),
    ("admin_audit.index", "Audit log", "read"),
    ("admin_config.index", "Configuration", "write"),
    ("admin_billing.index", "Billing health", "read"),
    ("admin_outbox.index", "Outbox", "write"),
]


# Path prefixes whose errors another format answers: the gateway's
# (views/gateway.py registers each provider's own error shape here).
ERROR_FORMATS: dict[str, object] = {}


def error_response(status: int, detail: str):
    """problem+json for the API, a short text for htmx (shown as a toast),
    a friendly page otherwise; never a stack trace."""
    for prefix, render in ERROR_FORMATS.items():
        if request.path.startswith(prefix):
            return render(status, detail)
    title = ERROR_TITLES.get(status, "Error")
    if authz.wants_json():
        response = jsonify(type=type_url(PROBLEM_KINDS.get(status, f"http-{status}")), title=title,
                           status=status, detail=detail)
        response.status_code = status
        response.mimetype = "application/problem+json"
        return response
    if htmx:
        return toast(make_response(detail, status), detail, "error")
    return make_response(render_template("errors/error.html", status=status, title=title, detail=detail), status)


_LIMIT_UNIT = re.compile(r"\b(\d+) (second|minute|hour|day|month|year)\b")


def _limit_in_words(limit: str) -> str:
    """Flask-Limiter's "5 per 15 minute", "20 per 1 minute" as "5 per 15 minutes", "20 per minute"."""
    return _LIMIT_UNIT.sub(lambda m: m[2] if m[1] == "1" else f"{m[1]} {m[2]}s", limit)


def _http_error(exc: HTTPException):
    detail = exc.description or ""
    if exc.code == 429:
        detail = ("Too many attempts. For your account's safety, please wait a few minutes "
                  f"and try again ({_limit_in_words(exc.description or '')}).")
    elif exc.code == 404 and "requested URL was not found" in detail:
        detail = "There is nothing at this address."
    response = error_response(exc.code or 500, detail)
    # Keep the headers the exception carries besides its own body's type:
    # `Allow` of a 405 (werkzeug's valid_methods), `WWW-Authenticate`, ...
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    if exc.code == 429 and exc.response is not None and "Retry-After" in exc.response.headers:
        response.headers["Retry-After"] = exc.response.headers["Retry-After"]
    return response


def _csrf_error(exc: CSRFError):
    return error_response(400, "This form has expired or was not sent from this site. Reload the page and try again.")


def _unexpected_error(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    g.server_error = f"{type(exc).__name__}: {exc}"  # for _count_server_error
    if current_app.config.get("SENTRY_DSN"):
        # This handler catches every exception, so Flask never signals one
        # to Sentry's integration: report it here.
        import sentry_sdk

        sentry_sdk.capture_exception(exc)
    return error_response(500, "An unexpected error occurred. It has been logged; please try again.")


@for_gateway_calls
def _count_server_error(response):
    """after_request: a 5xx answer (an unexpected exception included) counts
    for its route and minute on the system health page. Never raises: the
    error being counted may be the database's own."""
    if response.status_code < 500 or request.endpoint in _NO_DATABASE:
        return response
    try:
        from costguardian.services.platform import health

        rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
        health.count_error(f"{request.method} {rule}", response.status_code, g.pop("server_error", ""))
    except Exception:
        log.warning("could not count a server error", exc_info=True)
    return response
