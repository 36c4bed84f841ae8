"""Sign-up, sign-in (password and OIDC), sign-out and password reset."""
from __future__ import annotations

from urllib.parse import urlparse

from authlib.integrations.base_client import OAuthError
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from costguardian import oidc
from costguardian import authz
from costguardian.authz import current_actor, personal
from costguardian.extensions import limiter
from costguardian.forms import ForgotPasswordForm, LoginForm, ResetPasswordForm, SignupForm, apply_errors
from costguardian.rendering import external_url
from costguardian.services.platform import sessions
from costguardian.services.platform import settings as platform_settings
from costguardian.services.team import accounts, audit, invitations
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError

bp = Blueprint("auth", __name__)
INVITATION_SESSION_KEY = "invitation_token"  # set by the invitation accept page


def _account_key() -> str:
    return "account:" + (request.form.get("email") or "").strip().lower()


def _failed(response) -> bool:
    return response.status_code == 422


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if target:
        parts = urlparse(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("dashboard.index")


def _start_session(user, remember: bool = False, method: str = "password") -> None:
    session.clear()  # nothing from before sign-in carries over
    login_user(user, remember=remember)
    session[authz.SESSION_KEY] = sessions.start(user, current_actor(), method)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"], methods=["POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_account_key, deduct_when=_failed)
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data, current_actor())
        if user is not None:
            _start_session(user, remember=form.remember.data)
            return redirect(_safe_next(request.args.get("next")))
        form.form_errors.append("That email and password do not match an account.")
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit("20 per hour", methods=["POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    mode = platform_settings.signup_mode()
    if mode != "open":  # closed, or only through an invitation's own page
        return render_template("auth/signup_closed.html", mode=mode), 403 if request.method == "POST" else 200
    form = SignupForm()
    domains = platform_settings.get("signup_domains")
    if domains:
        form.email.description = f"Only addresses at {', '.join(domains)} may create an account here."
    if form.validate_on_submit():
        try:
            user = accounts.sign_up(form.email.data, form.name.data or "", form.password.data, current_actor(),
                                    channel="signup")
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            _start_session(user, method="signup")
            accounts.send_verification_email(user, verification_link, current_actor())
            flash(f"Welcome to Cost Guardian: your account is ready and you are signed in. Next, name your "
                  f"organization below; a short setup then helps you send your first usage. We also emailed a "
                  f"link to {user.email}: open it to confirm the address (needed only to join a colleague's "
                  f"organization by email domain).", "success")
            return redirect(url_for("orgs.new"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/signup.html", form=form), status


def verification_link(token: str) -> str:
    return external_url("account.verify_email", token=token)


@bp.post("/logout")
@personal
def logout():
    authz.end_impersonation("admin_signed_out")  # acting as someone: the admin signs out
    if current_user.is_authenticated:
        audit.record(current_actor(), "auth.signed_out", target=current_user._get_current_object())
    sessions.end_by_key(session.get(authz.SESSION_KEY), "signed_out")
    logout_user()
    session.clear()
    session["_remember"] = "clear"  # Flask-Login then deletes the remember-me cookie (clear() wiped its flag)
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/forgot-password", methods=["GET", "POST"])
@limiter.limit("10 per hour", methods=["POST"])
@limiter.limit("3 per hour", methods=["POST"], key_func=_account_key)
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        accounts.start_password_reset(
            form.email.data,
            link_for=lambda token: external_url("auth.reset_password", token=token),
            ttl_minutes=current_app.config["PASSWORD_RESET_TTL_MINUTES"],
            actor=current_actor(),
        )
        return render_template("auth/forgot_password_sent.html", email=form.email.data)
    status = 422 if request.method == "POST" else 200
    return render_template("auth/forgot_password.html", form=form), status


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@limiter.limit("20 per hour", methods=["POST"])
def reset_password(token: str):
    if accounts.usable_reset_token(token) is None:
        return render_template("auth/reset_password_invalid.html"), 410
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            user = accounts.reset_password(token, form.password.data, current_actor())
        except ValidationError as exc:
            apply_errors(form, exc)
        except RuleViolation:
            return render_template("auth/reset_password_invalid.html"), 410
        else:
            _start_session(user, method="reset")
            flash("Your password is changed, and every other session is signed out.", "success")
            return redirect(url_for("dashboard.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/reset_password.html", form=form, token=token), status


@bp.get("/login/oidc")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"])
def oidc_start():
    client = oidc.client()
    if client is None:
        abort(404)
    session["next"] = _safe_next(request.args.get("next"))
    try:
        return client.authorize_redirect(external_url("auth.oidc_callback"))
    except Exception:  # the provider's metadata could not be fetched
        current_app.logger.exception("OIDC provider unreachable")
        flash(f"{current_app.config['OIDC_PROVIDER_NAME']} sign-in is unavailable right now. "
              "Try again, or use your email and password.", "error")
        return redirect(url_for("auth.login"))


@bp.get("/login/oidc/callback")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"])
def oidc_callback():
    client = oidc.client()
    if client is None:
        abort(404)
    provider = current_app.config["OIDC_PROVIDER_NAME"]
    try:
        token = client.authorize_access_token()
    except OAuthError as exc:
        flash(f"{provider} sign-in did not complete ({exc.description or exc.error}).", "error")
        return redirect(url_for("auth.login"))
    claims = token.get("userinfo") or {}
    try:
        user = accounts.sign_in_with_oidc(client.load_server_metadata()["issuer"], dict(claims), current_actor(),
                                          invitation_email=_pending_invitation_email())
    except RuleViolation as exc:
        flash(exc.message, "error")
        return redirect(url_for("auth.login"))
    next_url = session.get("next")
    # Sign-in started on an invitation's page: used once, whatever the outcome,
    # so that no later sign-in tries it again.
    invitation_token = session.pop(INVITATION_SESSION_KEY, None)
    _start_session(user, method="oidc")
    if invitation_token and _accept_invitation(user, invitation_token):
        return redirect(url_for("dashboard.index"))
    return redirect(_safe_next(next_url))


def _pending_invitation_email() -> str | None:
    """The address of the usable invitation whose page started this sign-in,
    if any: a first sign-in with that address counts as invited (the
    sign-up policy's invite_only)."""
    invitation = invitations.by_token(session.get(INVITATION_SESSION_KEY) or "")
    try:
        invitations.check_can_accept(invitation, None)
    except RuleViolation:
        return None
    return invitation.email


def _accept_invitation(user, token: str) -> bool:
    """Accept the invitation as `user` just signed in; False (with the
    reason flashed) when it cannot be used."""
    try:
        membership = invitations.accept(token, user, current_actor())
    except (RuleViolation, NotPermitted) as exc:
        flash(exc.message, "error")
        return False
    session["org_id"] = membership.organization_id
    flash(f"Welcome to {membership.organization.name}. You joined as {membership.role}.", "success")
    return True
