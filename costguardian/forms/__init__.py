"""Flask-WTF forms: shape and CSRF. Domain rules live in services; their
ValidationError is merged back into the form with `apply_errors`.
Forms of the accounts and organization areas live here; other areas keep
theirs in a module of this package named after the area."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from costguardian import permissions
from costguardian.services.team.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from costguardian.services.errors import ValidationError
from costguardian.services.team.orgs import CURRENCIES, time_zones

_password_length = Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH,
                          message=f"Use between {MIN_PASSWORD_LENGTH} and {MAX_PASSWORD_LENGTH} characters.")


def apply_errors(form: FlaskForm, exc: ValidationError) -> None:
    """Show a service's field errors on the form ("" goes to the form itself)."""
    for field_name, message in exc.errors.items():
        field = getattr(form, field_name, None)
        if field is not None and hasattr(field, "errors"):
            field.errors = list(field.errors) + [message]
        else:
            form.form_errors.append(message)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(message="Enter your email address."), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(message="Enter your password."),
                                                     Length(max=MAX_PASSWORD_LENGTH)])
    remember = BooleanField("Keep me signed in on this device")


class SignupForm(FlaskForm):
    name = StringField("Your name", validators=[Optional(), Length(max=120)])
    email = EmailField("Work email", validators=[DataRequired(message="Enter your email address."), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(message="Choose a password."), _password_length])
    confirm = PasswordField("Repeat password", validators=[
        DataRequired(message="Repeat the password."), EqualTo("password", message="The passwords do not match.")])


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(message="Enter your email address."), Length(max=254)])


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(message="Choose a password."), _password_length])
    confirm = PasswordField("Repeat new password", validators=[
        DataRequired(message="Repeat the password."), EqualTo("password", message="The passwords do not match.")])


class ProfileForm(FlaskForm):
    name = StringField("Name", validators=[Optional(), Length(max=120)])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[Length(max=MAX_PASSWORD_LENGTH)])
    new_password = PasswordField("New password", validators=[DataRequired(message="Choose a password."),
                                                             _password_length])
    confirm = PasswordField("Repeat new password", validators=[
        DataRequired(message="Repeat the password."),
        EqualTo("new_password", message="The passwords do not match.")])


class OrganizationForm(FlaskForm):
    name = StringField("Organization name", validators=[
        DataRequired(message="Give the organization a name."), Length(max=120)])
    time_zone = SelectField("Time zone", default="UTC",
                            description="Budgets reset and daily charts turn over at midnight in this zone.")
    currency = SelectField("Display currency", default="USD",
                           description="How amounts are labelled; costs are recorded in US dollars.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.time_zone.choices = [(z, z.replace("_", " ")) for z in time_zones()]
        self.currency.choices = [(code, f"{code} — {name}") for code, name in CURRENCIES.items()]


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[(r, r.title()) for r in permissions.ROLES])
