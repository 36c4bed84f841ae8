"""The signed-in user's own profile, password and email confirmation, and the
public page the emailed confirmation link opens."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, session
from flask_login import current_user, login_user

from costguardian.authz import current_actor, personal
from costguardian.forms import ChangePasswordForm, ProfileForm, apply_errors
from costguardian.extensions import limiter
from costguardian.rendering import render, toast
from costguardian.services.team import accounts
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.views.auth import verification_link

bp = Blueprint("account", __name__, url_prefix="/account")

PAGE = "account/index.html"
PROFILE, PASSWORD = "partials/account/_profile_form.html", "partials/account/_password_form.html"
EMAIL_STATUS = "partials/account/_email_status.html"


def _page(**forms):
    forms.setdefault("profile_form", ProfileForm(obj=current_user))
    forms.setdefault("password_form", ChangePasswordForm())
    return forms


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
