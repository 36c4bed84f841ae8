"""The signed-in user's own profile and password."""
from __future__ import annotations

from flask import Blueprint
from flask_login import current_user, login_user

from costguardian.authz import current_actor, personal
from costguardian.forms import ChangePasswordForm, ProfileForm, apply_errors
from costguardian.rendering import render, toast
from costguardian.services import accounts
from costguardian.services.errors import ValidationError

bp = Blueprint("account", __name__, url_prefix="/account")

PAGE = "account/index.html"
PROFILE, PASSWORD = "partials/account/_profile_form.html", "partials/account/_password_form.html"


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
