"""The signed-in user's own profile, password and email confirmation, and the
public page the emailed confirmation link opens."""
from __future__ import annotations

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_user, logout_user

from costguardian import authz, clock
from costguardian.authz import current_actor, personal, platform_required
from costguardian.forms import ChangePasswordForm, ProfileForm, apply_errors
from costguardian.extensions import htmx, limiter
from costguardian.rendering import render, streamed_download, toast
from costguardian.services.platform import sessions, tokens
from costguardian.services.team import accounts, audit, data_export, self_service
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from costguardian.views.auth import verification_link

bp = Blueprint("account", __name__, url_prefix="/account")

PAGE = "account/index.html"
PROFILE, PASSWORD = "partials/account/_profile_form.html", "partials/account/_password_form.html"
EMAIL_STATUS = "partials/account/_email_status.html"
PLATFORM_TOKENS = "partials/account/_platform_tokens.html"


def _page(**forms):
    forms.setdefault("profile_form", ProfileForm(obj=current_user))
    forms.setdefault("password_form", ChangePasswordForm())
    user = current_user._get_current_object()
    forms["live_sessions"] = sessions.live(user)
    forms["this_session"] = g.get("user_session")
    forms["security_log"] = audit.security_log(user)
    forms["deletion_refusal"] = self_service.account_deletion_refusal(user)
    if authz.platform_can("read"):
        forms.setdefault("token_form", {"values": {"scopes": tokens.READ}, "errors": {}})
        forms["platform_tokens"] = tokens.tokens_of(user)
        forms["token_scopes"] = tokens.SCOPES
        forms["token_status"] = tokens.status
        forms["now"] = clock.now()
    return forms


@bp.post("/sessions/<int:session_id>/end")
@personal
def end_session(session_id: int):
    """Sign one of your other browsers out (this one signs out with "Sign out")."""
    user = current_user._get_current_object()
    row = sessions.get_for(user, session_id)
    if row is None:
        abort(404, "There is no such session.")
    this = g.get("user_session")
    if this is not None and row.id == this.id:
        abort(409, "This is the session you are using: sign out instead.")
    if sessions.end(row, "ended_by_user"):
        audit.record(current_actor(), "user.session_ended", target=user, session=row.id)
    flash("That session is signed out.", "success")
    return redirect(url_for("account.index"))


@bp.post("/sessions/end-others")
@personal
def end_other_sessions():
    user = current_user._get_current_object()
    this = g.get("user_session")
    ended = 0
    for row in sessions.live(user):
        if this is None or row.id != this.id:
            ended += sessions.end(row, "ended_by_user")
    # Remember-me cookies name the session version: a new one ends them too,
    # and this browser carries on under it.
    sessions.bump_version(user)
    login_user(user)
    audit.record(current_actor(), "user.sessions_ended", target=user, reason="ended_by_user", sessions=ended)
    flash(f"{ended} other session(s) signed out." if ended else "No other session was signed in.", "success")
    return redirect(url_for("account.index"))


@bp.get("/")
@personal
def index():
    return render(PAGE, PAGE, **_page())


@bp.post("/profile")
@personal
def update_profile():
    form = ProfileForm()
    if form.validate():
        try:
            accounts.update_profile(current_user._get_current_object(), form.name.data or "", current_actor())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return toast(render(PAGE, PROFILE, **_page(profile_form=form)), "Profile saved.")
    return render(PAGE, PROFILE, status=422, **_page(profile_form=form))


@bp.post("/password")
@personal
def change_password():
    form = ChangePasswordForm()
    if form.validate():
        user = current_user._get_current_object()
        try:
            accounts.change_password(user, form.current_password.data or "", form.new_password.data, current_actor())
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            login_user(user)  # this session continues under the new session version
            session[authz.SESSION_KEY] = sessions.start(user, current_actor(), "password")
            response = render(PAGE, PASSWORD, **_page(password_form=ChangePasswordForm(formdata=None)))
            return toast(response, "Password changed. Other sessions are signed out.")
    return render(PAGE, PASSWORD, status=422, **_page(password_form=form))


def _user_key() -> str:
    return f"verify-email:{current_user.get_id()}"


@bp.post("/verify-email")
@personal
@limiter.limit("10 per hour")
@limiter.limit("3 per hour", key_func=_user_key)
def resend_verification():
    user = current_user._get_current_object()
    try:
        accounts.send_verification_email(user, verification_link, current_actor())
    except RuleViolation as exc:
        return toast(render(PAGE, EMAIL_STATUS, **_page()), exc.message, "info")
    return toast(render(PAGE, EMAIL_STATUS, sent=True, **_page()), f"Confirmation email sent to {user.email}.")


@bp.get("/verify-email/<token>")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"])
def verify_email(token: str):
    """Public: the signed token is the authorization. Idempotent."""
    try:
        user, joined = accounts.verify_email(token, current_actor())
    except RuleViolation as exc:
        return render_template("account/verify_email_invalid.html", message=exc.message), 400
    signed_in_as_them = current_user.is_authenticated and current_user.id == user.id
    if joined and signed_in_as_them:
        session["org_id"] = joined[0].organization_id  # show the organization they just joined
    return render_template("account/verify_email.html", user=user, joined=joined,
                           signed_in_as_them=signed_in_as_them)


@bp.post("/platform-tokens")
@platform_required("read")
def create_platform_token():
    """A personal token for the admin JSON API; its full text is in this answer only."""
    values = {name: request.form.get(name, "") for name in ("name", "scopes", "expires_in_days")}
    try:
        new = tokens.create(current_user._get_current_object(), current_actor(), values["name"], values["scopes"],
                            values["expires_in_days"])
    except ValidationError as exc:
        form = {"values": values, "errors": exc.errors}
        return render(PAGE, PLATFORM_TOKENS, status=422, **_page(token_form=form))
    response = render(PAGE, PLATFORM_TOKENS, revealed_token=new, **_page())
    return toast(response, f"Platform token “{new.token.name}” created. Copy it now.")


@bp.post("/platform-tokens/<int:token_id>/revoke")
@platform_required("read")
def revoke_platform_token(token_id: int):
    token = tokens.get_for(current_user._get_current_object(), token_id)
    if token is None:
        abort(404, "There is no such token.")
    tokens.revoke(token, current_actor())
    message = f"Platform token “{token.name}” was revoked; requests with it are refused."
    if htmx:
        return toast(render(PAGE, PLATFORM_TOKENS, **_page()), message)
    flash(message, "success")
    return redirect(url_for("account.index", _anchor="platform-tokens"))


@bp.get("/export")
@personal
def export_data():
    """Your own data as one JSON file (profile, memberships, keys' metadata,
    chat conversations, audit trail), streamed."""
    user = current_user._get_current_object()
    try:
        pieces = data_export.account_export(user, current_actor())
    except NotPermitted as exc:
        abort(403, exc.message)
    return streamed_download(pieces, "application/json", data_export.account_filename(user))


@bp.post("/delete")
@personal
def delete_account():
    """Delete your own account (typed confirmation), then sign out."""
    user = current_user._get_current_object()
    try:
        self_service.delete_own_account(user, current_actor(), request.form.get("confirm", ""))
    except NotPermitted as exc:
        abort(403, exc.message)
    except (ValidationError, RuleViolation) as exc:
        errors = getattr(exc, "errors", None) or {"confirm": exc.message}
        return render(PAGE, PAGE, status=422, **_page(deletion_errors=errors))
    logout_user()
    session.clear()
    session["_remember"] = "clear"  # Flask-Login then deletes the remember-me cookie
    flash("Your account is deleted.", "info")
    return redirect(url_for("auth.login"))
