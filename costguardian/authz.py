"""Who may see what: the sign-in guard, the current organization, and the
permission decorators every view declares."""
from __future__ import annotations

import functools

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_login import current_user

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
    "invitations.accept",  # shows the invitation; joining needs the invited account
    "unsubscribe.confirm",  # the signed token in the URL is the authorization
    "unsubscribe.apply",
    "account.verify_email",  # the signed token in the URL is the authorization
    "billing.stripe_webhook",  # Stripe's signature is the authorization
})


# Endpoints that never look at the session's user (nor load the organization):
# static files and the probes, which a load balancer calls with whatever
# cookies it has and which must not depend on the user rows.
SESSIONLESS_ENDPOINTS = frozenset({"static", "health.healthz", "health.readyz"})


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


def superadmin_required(view):
    """Declare a platform view for superadmins (User.is_superadmin) only; it
    spans every organization, so no organization permission applies. 404 to
    everyone else: the page does not exist for them."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not (current_user.is_authenticated and current_user.is_superadmin):
            abort(404)
        return view(*args, **kwargs)

    wrapped.required_permission = None
    wrapped.superadmin = True
    return wrapped


def current_actor() -> Actor:
    """The signed-in user (or nobody) and where the request came from, for audit rows."""
    user = current_user._get_current_object() if current_user.is_authenticated else None
    return Actor(user=user, ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", ""))
