"""Forms of the API keys area: creating a key and rotating one. The rules
(scopes, members, expiry in the future) are the key service's; these forms
give them shape and turn the choices into the service's arguments."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, RadioField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, StopValidation
from wtforms.validators import ValidationError as FieldError
from wtforms.widgets import CheckboxInput, ListWidget

from costguardian import clock
from costguardian.forms.dates import IsoDateField
from costguardian.models import Department, User
from costguardian.services.team import members
from costguardian.services.errors import ValidationError
from costguardian.services.keys import ENVS, SCOPES

EXPIRY_CHOICES = [SelectChoice("never", "Never"), SelectChoice("30", "In 30 days"), SelectChoice("90", "In 90 days"),
                  SelectChoice("365", "In 1 year"), SelectChoice("custom", "On a date…")]
MAX_EXPIRY_DAYS = 5 * 366
# How long the old secret keeps working after a rotation, in hours.
GRACE_CHOICES = [(0, "Stops now"), (1, "1 hour"), (24, "24 hours"), (168, "7 days")]


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def department_paths(org) -> list[tuple[int, str]]:
    """The organization's departments as (id, "Parent › Child"), sorted by that path."""
    departments = {d.id: d for d in Department.in_org(org)}

    def path(dept, seen=()):
        parent = departments.get(dept.parent_id)
        if parent is None or parent.id in seen:
            return dept.name
        return f"{path(parent, seen + (dept.id,))} › {dept.name}"

    return sorted(((d.id, path(d)) for d in departments.values()), key=lambda item: item[1].lower())


class ApiKeyForm(FlaskForm):
    name = StringField("Name", validators=[
        DataRequired(message="Name the key after what uses it, e.g. \"search-service prod\"."),
        Length(max=80, message="Use at most 80 characters.")],
        description="What uses this key, so you recognise it in reports and the audit log.")
    scopes = CheckboxesField("Scopes", choices=[SelectChoice(s, d) for s, d in SCOPES.items()],
                            default=["ingest"])
    env = RadioField("Environment", choices=[SelectChoice(e, e.title()) for e in ENVS], default="live",
                     description="Part of the key's text (cg_live_… or cg_test_…), so test keys stand out.")
    expires = SelectField("Expires", choices=EXPIRY_CHOICES, default="never")
    expires_on = IsoDateField("Expiry date (YYYY-MM-DD)",
                              description="The key stops working at the end of this day in the organization's "
                                          "time zone.")
    # A member picker (partials/members/_picker.html): the user id, and the email typed.
    user = HiddenField("Attribute usage to a member", default="",
                       description="Usage sent with this key counts for this person unless an event names "
                                   "another.")
    user_email = StringField("Member's email", default="")
    department = SelectField("Attribute usage to a department", default="",
                             description="Usage sent with this key counts for this department unless an event "
                                         "names another.")

    def __init__(self, org, *args, own_only: User | None = None, **kwargs):
        """`own_only`: the form of someone who may make only keys bound to
        themselves (a member): that person is the only choice, and the admin
        scope is not offered."""
        super().__init__(*args, **kwargs)
        self.org = org
        self.own_only = own_only
        if own_only is not None:
            self.user.data = str(own_only.id)
            self.user_email.data = own_only.email
            self.scopes.choices = [c for c in self.scopes.choices if c.value != "admin"]
        self.department.choices = [SelectChoice("", "— No department —")] + [
            SelectChoice(str(dept_id), label) for dept_id, label in department_paths(org)]

    def validate_expires_on(self, field):
        if self.expires.data != "custom":  # the date only counts with "On a date…"
            field.errors[:] = []
            field.data = None
            raise StopValidation()
        if field.errors:  # "Enter a date as YYYY-MM-DD."
            return
        if field.data is None:
            raise FieldError("Pick the day the key stops working.")
        if field.data > clock.today(self.org) + timedelta(days=MAX_EXPIRY_DAYS):
            raise FieldError("Choose a date within five years, or \"Never\".")

    def expires_at(self) -> datetime | None:
        """The expiry as naive UTC: N days from now, or the end of the chosen day
        in the organization's time zone."""
        if self.expires.data == "never":
            return None
        if self.expires.data == "custom":
            end_of_day = datetime.combine(self.expires_on.data, time.max, tzinfo=ZoneInfo(self.org.time_zone))
            return end_of_day.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
        return clock.now() + timedelta(days=int(self.expires.data))

    def validate_user(self, field):
        typed = (self.user_email.raw_data or [""])[0].strip()
        if self.own_only is None and (field.data or typed) and self.bound_user() is None:
            raise FieldError("No member of this organization has this email: choose one of the suggestions."
                             if typed else "Choose a member of this organization.")

    def bound_user(self) -> User | None:
        if self.own_only is not None:
            return self.own_only
        text = self.user_email.raw_data[0] if self.user_email.raw_data else None
        membership, _asked = members.picked(self.org, text, self.user.data)
        return membership.user if membership is not None else None

    def bound_department(self) -> Department | None:
        return Department.get_in_org(self.org, self.department.data) if self.department.data else None

    def apply_errors(self, exc: ValidationError) -> None:
        """Show the service's field errors next to the fields they concern."""
        fields = {"expires_at": "expires_on" if self.expires.data == "custom" else "expires"}
        for name, message in exc.errors.items():
            field = getattr(self, fields.get(name, name), None)
            if field is not None and hasattr(field, "errors"):
                field.errors = list(field.errors) + [message]
            else:
                self.form_errors.append(message)


class RotateForm(FlaskForm):
    grace_hours = SelectField("Old secret keeps working", coerce=int, default=24,
                              choices=[SelectChoice(str(hours), label) for hours, label in GRACE_CHOICES])


class GatewayLimitsForm(FlaskForm):
    """Requests and tokens per minute through the gateway; empty for no limit.
    The numbers are checked by the key service (keys.set_gateway_limits)."""

    rpm_limit = StringField("Requests per minute", description="Empty: no limit.",
                            render_kw={"inputmode": "numeric", "autocomplete": "off"})
    tpm_limit = StringField("Tokens per minute", description="Input + output tokens. Empty: no limit.",
                            render_kw={"inputmode": "numeric", "autocomplete": "off"})

    def apply_errors(self, exc: ValidationError) -> None:
        for name, message in exc.errors.items():
            field = getattr(self, name, None)
            if field is not None and hasattr(field, "errors"):
                field.errors = list(field.errors) + [message]
            else:
                self.form_errors.append(message)


class KeyLimitsForm(GatewayLimitsForm):
    attribution_override = BooleanField(
        "Calls may choose their attribution",
        description="X-CG-User, X-CG-Department, X-CG-Tags and the body's user field override this key's "
                    "defaults. Off: they are refused (403) and the body's user is ignored for attribution.")
