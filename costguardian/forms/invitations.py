"""Forms of the invitations area: inviting, accepting, and the join domain."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from costguardian.forms import _password_length
from costguardian.services.team.accounts import MAX_PASSWORD_LENGTH


class InviteForm(FlaskForm):
    emails = TextAreaField("Email addresses", validators=[DataRequired(message="Enter at least one email address.")],
                           description="One per line, or separated by commas or spaces.")
    role = SelectField("Role", default="member")
    department = SelectField("Department", default="")

    def __init__(self, grantable: list[str], departments, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.role.choices = [(r, r.title()) for r in grantable]
        self.department.choices = [("", "No department")] + [(str(d.id), d.name) for d in departments]


class AcceptSignupForm(FlaskForm):
    name = StringField("Your name", validators=[Optional(), Length(max=120)])
    password = PasswordField("Password", validators=[DataRequired(message="Choose a password."), _password_length])
    confirm = PasswordField("Repeat password", validators=[
        DataRequired(message="Repeat the password."), EqualTo("password", message="The passwords do not match.")])


class AcceptSigninForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(message="Enter your password."),
                                                     Length(max=MAX_PASSWORD_LENGTH)])


class JoinDomainForm(FlaskForm):
    join_domain = StringField("Allowed email domain", validators=[Optional(), Length(max=253)],
                              description="For example acme.com. Leave empty to turn joining by domain off.")
    join_domain_role = SelectField("Role for people who join this way", default="member")

    def __init__(self, roles: list[str], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.join_domain_role.choices = [(r, r.title()) for r in roles]
