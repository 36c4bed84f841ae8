"""Who may see what: the sign-in guard, the current organization, and the
permission decorators every view declares."""
from __future__ import annotations

import functools

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, logout_user

from costguardian import permissions
from costguardian.extensions import htmx
from costguardian.models import Membership
from costguardian.services.actor import Actor

# Endpoints anyone may call without signing in. A test proves every other
# route answers an anonymous request with a sign-in redirect or a 401.
PUBLIC_ENDPOINTS = frozenset({
    "static",
    "health.healthz",
    "health.readyz",
    "auth.login",
    "auth.signup",
    "auth.forgot_password",
    "auth.reset_password",
    "auth.oidc_start",
    "auth.oidc_callback",
    "api.openapi",
    "api.gateway_openapi",  # the gateway's document, like the API's
    "docs.api",  # the API reference and error types document the public API; nothing of any organization
    "docs.problems",
    "docs.problem",
    "invitations.accept",  # shows the invitation; joining needs the invited account
    "unsubscribe.confirm",  # the signed token in the URL is the authorization
    "unsubscribe.apply",
    "account.verify_email",  # the signed token in the URL is the authorization
    "billing.stripe_webhook",  # Stripe's signature is the authorization
    "observability.scrape",  # /metrics: its own bearer token (CG_METRICS_TOKEN), else direct private callers only
})


# Endpoints that never look at the session's user (nor load the organization):
# static files and the probes, which a load balancer calls with whatever
# cookies it has and which must not depend on the user rows.
SESSIONLESS_ENDPOINTS = frozenset({"static", "health.healthz", "health.readyz", "observability.scrape"})


def wants_json() -> bool:
    return request.path.startswith("/api/")


def require_sign_in():
    """before_request: every non-public endpoint needs a signed-in user."""
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if getattr(current_app.view_functions.get(request.endpoint), "api_key_auth", False):
        return None  # the JSON API authenticates each request by its API key instead
    if current_user.is_authenticated:
        return None
    if wants_json() or htmx:
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


SESSION_KEY = "sid"  # the UserSession key in the signed session cookie
IMPERSONATION_KEY = "acting_as"  # the Impersonation key in the admin's session cookie

# What an admin acting as a user may not do: the user's credentials, email,
# identity links and API keys stay the user's own (and the console is the
# admin's, not the user's).
IMPERSONATION_FORBIDDEN = frozenset({
    "account.change_password", "account.resend_verification", "account.end_session", "account.end_other_sessions",
    "auth.oidc_start", "auth.oidc_callback",
    "account.create_platform_token", "account.revoke_platform_token",
    "invitations.accept",  # joining another organization is the person's own decision
    "webhooks.roll_secret",
})
# Areas where an acting admin may look but not change anything: credentials
# (API keys, provider keys) and money (billing).
IMPERSONATION_READ_ONLY = frozenset({"keys", "providers", "billing"})


def impersonation_forbids(endpoint: str | None, method: str) -> bool:
    if endpoint in IMPERSONATION_FORBIDDEN:
        return True
    return method not in ("GET", "HEAD") and (endpoint or "").split(".")[0] in IMPERSONATION_READ_ONLY


def check_session():
    """before_request: the signed-in browser's UserSession must be live. One
    ended elsewhere (sign-out, "end session", a disabled account) signs this
    browser out now. A browser without one (restored by its remember-me
    cookie) gets a new one."""
    from costguardian.services.platform import sessions

    g.user_session = None
    if request.endpoint is None or request.endpoint in SESSIONLESS_ENDPOINTS:
        return None
    if getattr(current_app.view_functions.get(request.endpoint), "api_key_auth", False):
        return None  # (before current_user: an API call has no session to load a user from)
    if not current_user.is_authenticated:
        return None
    user = current_user._get_current_object()
    key = session.get(SESSION_KEY)
    row = sessions.current(user, key)
    if row is not None:
        g.user_session = row
        return None
    if key is None:
        # Restored from a remember-me cookie (its session cookie is gone). A
        # client that keeps no session cookie at all would make a row per
        # request: one a minute per browser is enough.
        if not sessions.remembered_recently(user, current_actor()):
            session[SESSION_KEY] = sessions.start(user, current_actor(), "remembered")
        return None
    logout_user()
    session.clear()
    session["_remember"] = "clear"  # and Flask-Login deletes the remember-me cookie (clear() wiped its flag)
    if wants_json() or htmx:
        abort(401)
    flash("Your session was ended. Please sign in again.", "info")
    return redirect(url_for("auth.login"))


def apply_impersonation():
    """before_request: when the admin's session names a live impersonation,
    the rest of the request runs as the impersonated user (current_user), with
    g.impersonation holding who really acts and why."""
    from costguardian.services.platform import impersonation

    g.impersonation = None
    key = session.get(IMPERSONATION_KEY)
    if not key or request.endpoint in SESSIONLESS_ENDPOINTS or not current_user.is_authenticated:
        return None
    admin = current_user._get_current_object()
    row = impersonation.resolve(admin, key)
    if row is None:
        session.pop(IMPERSONATION_KEY, None)
        session.pop("org_id", None)  # the user's organization, not the admin's choice
        message = ("You are yourself again: acting as the user ended (after 60 minutes, or the account can no "
                   "longer be impersonated).")
        if request.method in ("GET", "HEAD"):
            flash(message, "info")
            return None
        # What was meant to be done as the user must not run as the admin.
        if wants_json() or htmx:
            abort(409, message + " Nothing was changed.")
        flash(message + " Nothing was changed.", "info")
        return redirect(url_for("dashboard.index"))
    g.impersonation = row
    g._login_user = row.user  # Flask-Login's current_user from here on
    if impersonation_forbids(request.endpoint, request.method):
        abort(403, f"Not while acting as {row.user.email}: their password, email, sign-in links and API keys "
                   "stay theirs.")
    return None


def end_impersonation(reason: str = "stopped"):
    """End the impersonation this request runs under, if any; returns the
    admin, who is the current user again."""
    from costguardian.services.platform import impersonation

    row = g.get("impersonation")
    session.pop(IMPERSONATION_KEY, None)
    if row is None:
        return None
    admin = row.admin
    g._login_user = admin
    g.impersonation = None
    impersonation.stop(row, current_actor(), reason)
    return admin


def audit_impersonated_request(response):
    """after_request: while impersonating, every request is audit-logged with
    both identities and the reason; and every console page a platform admin
    reads is logged too (a view that logged its own "platform.viewed" row,
    naming the organization it showed, is not logged twice)."""
    from costguardian.services.team import audit

    row = g.get("impersonation")
    if row is not None and request.endpoint not in SESSIONLESS_ENDPOINTS:
        audit.record(current_actor(), "impersonation.request", org=g.get("org"), method=request.method,
                     path=request.full_path.rstrip("?")[:500], status=response.status_code, reason=row.reason,
                     impersonation=row.id)
    elif (request.method == "GET" and response.status_code == 200 and not g.get("platform_view_logged")
          and getattr(current_app.view_functions.get(request.endpoint), "platform", None)
          and current_user.is_authenticated):
        audit.record(current_actor(), "platform.viewed", path=request.full_path.rstrip("?")[:500])
    return response


def load_organization():
    """before_request: g.membership and g.org for the signed-in user, from the
    organization chosen in the session (else their first one)."""
    g.membership = g.org = None
    if request.endpoint is None or request.endpoint in SESSIONLESS_ENDPOINTS or not current_user.is_authenticated:
        return
    memberships = list(Membership.for_user(current_user))
    g.memberships = memberships
    chosen = session.get("org_id")
    membership = next((m for m in memberships if m.organization_id == chosen), None)
    if membership is None and memberships:
        membership = memberships[0]
        session["org_id"] = membership.organization_id
    if membership is not None:
        g.membership, g.org = membership, membership.organization


def can(permission: str) -> bool:
    """For templates and views: does the current member's role grant this?"""
    membership = g.get("membership")
    return membership is not None and permissions.role_can(membership.role, permission)


def org_required(view):
    """The view needs a current organization; without one, onboarding."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("org") is None:
            if htmx or wants_json():
                abort(409, "Create or join an organization first.")
            if platform_can("read") and "admin_overview.index" in current_app.view_functions:
                return redirect(url_for("admin_overview.index"))  # a platform admin's home is the console
            return redirect(url_for("orgs.new"))
        return view(*args, **kwargs)

    return wrapped


def require_permission(permission: str):
    """Declare the permission a view needs: 403 (a friendly page for full
    pages, a bare status for htmx and JSON) when the role lacks it."""
    if permission not in permissions.PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    def decorate(view):
        @functools.wraps(view)
        @org_required
        def wrapped(*args, **kwargs):
            if not can(permission):
                abort(403, f"Your role ({g.membership.role}) does not allow this ({permission}).")
            return view(*args, **kwargs)

        wrapped.required_permission = permission
        return wrapped

    return decorate


def personal(view):
    """Declare that a view acts only on the signed-in user's own account
    (profile, sign-out, creating or switching their organizations), so no
    organization permission applies. Every non-public view declares either
    this or `require_permission`; a test checks it."""
    view.required_permission = None
    view.personal = True
    return view


PLATFORM_LEVELS = {
    "read": ("support", "superadmin"),  # see everything in the console
    "impersonate": ("support", "superadmin"),  # act as a user who is not a platform admin
    "write": ("superadmin",),  # change, delete, configure
}


def platform_can(level: str) -> bool:
    """Does the signed-in person (never an impersonated session) hold this platform level?"""
    if g.get("impersonation") is not None:
        return False  # acting as someone: no console, whoever the admin is
    return current_user.is_authenticated and current_user.platform_role in PLATFORM_LEVELS[level]


def platform_required(level: str = "read"):
    """Declare a platform console view: it spans every organization, so no
    organization permission applies. 403 to signed-in people without the
    platform role (organization owners included); anonymous requests were
    already sent to sign in."""
    if level not in PLATFORM_LEVELS:
        raise KeyError(f"unknown platform level {level!r}")

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not platform_can(level):
                abort(403, "This page is for platform administrators"
                      + (" (superadmin)." if level == "write" else "."))
            return view(*args, **kwargs)

        wrapped.required_permission = None
        wrapped.platform = level
        return wrapped

    return decorate


# The outbox shows password-reset links: superadmins only, like every write.
superadmin_required = platform_required("write")


def current_actor() -> Actor:
    """The signed-in user (or nobody) and where the request came from, for audit rows."""
    user = current_user._get_current_object() if current_user.is_authenticated else None
    impersonation = g.get("impersonation")
    return Actor(user=user, ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", ""),
                 impersonator=impersonation.admin if impersonation is not None else None)
