"""Forms of the departments area. The rules (unique names and codes, no
cycles, the manager is a member) are the department service's; these forms
give them shape and turn the choices into models."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError as InvalidField

from costguardian.models import Department, Membership, User
from costguardian.services.team import departments, members
from costguardian.services.errors import ValidationError


NO_SUCH_MEMBER = "No member of this organization has this email: choose one of the suggestions."


def _text(field) -> str | None:
    """A picker's visible field as posted; None when the form did not send it
    (a client that posts only the id)."""
    return field.raw_data[0] if field.raw_data else None


class _Base(FlaskForm):
    def apply_errors(self, exc: ValidationError) -> None:
        """Show the service's field errors next to the fields they concern."""
        for name, message in exc.errors.items():
            field = getattr(self, name, None)
            if field is not None and hasattr(field, "errors"):
                field.errors = list(field.errors) + [message]
            else:
                self.form_errors.append(message)


class DepartmentForm(_Base):
    name = StringField("Name", validators=[DataRequired(message="Give the department a name."),
                                           Length(max=120, message="Use at most 120 characters.")])
    code = StringField("Cost-centre code", validators=[Length(max=32, message="Use at most 32 characters.")],
                       description="Optional; your finance system's code, e.g. CC-4100. Unique when set.")
    # Choices are checked by the service (with its own messages), not by wtforms.
    parent = SelectField("Parent department", default="", validate_choice=False)
    # A member picker (partials/members/_picker.html): the user id, and the email typed.
    manager = HiddenField("Manager", default="", description="A member of the organization.")
    manager_email = StringField("Manager's email", default="")

    def __init__(self, org, *args, department: Department | None = None, **kwargs):
        if department is not None and "obj" not in kwargs and kwargs.get("formdata", True) is None:
            kwargs["data"] = {"name": department.name, "code": department.code or "",
                              "parent": str(department.parent_id or ""),
                              "manager": str(department.manager_id or ""),
                              "manager_email": department.manager.email if department.manager_id else ""}
        super().__init__(*args, **kwargs)
        self.org = org
        excluded = set(departments.descendant_ids(org, department)) if department is not None else set()
        self.parent.choices = [SelectChoice("", "— None (top level) —")] + [
            SelectChoice(str(dept_id), path) for dept_id, path in departments.choices(org) if dept_id not in excluded]

    def validate_parent(self, field) -> None:
        """An id that names no department of this organization (unknown, or
        another tenant's) is an error, never read as "top level"."""
        if field.data and self.parent_department() is None:
            raise InvalidField("Choose a department of this organization.")

    def validate_manager(self, field) -> None:
        """Likewise for the manager: an unknown or malformed id is an error, not "no manager"."""
        if (field.data or _text(self.manager_email)) and self.manager_user() is None:
            raise InvalidField(NO_SUCH_MEMBER if _text(self.manager_email) else "Choose a member of this organization.")

    def parent_department(self) -> Department | None:
        return departments.get(self.org, self.parent.data) if self.parent.data else None

    def manager_user(self) -> User | None:
        text = _text(self.manager_email)
        membership, _asked = members.picked(self.org, text, self.manager.data)
        if membership is not None:
            return membership.user
        if text is None and members.parse_id(self.manager.data):  # the service says why a non-member cannot manage
            return User.get_or_none(User.id == members.parse_id(self.manager.data))
        return None


class TargetForm(_Base):
    """Merge into / move members to: another department of the organization."""

    target = SelectField("Department", default="", validate_choice=False)

    def __init__(self, org, department: Department, *args, empty: str | None = None, label: str = "Department",
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.org = org
        self.target.label.text = label
        self.target.choices = ([SelectChoice("", empty)] if empty else []) + [
            SelectChoice(str(dept_id), path) for dept_id, path in departments.choices(org) if dept_id != department.id]

    def target_department(self) -> Department | None:
        return Department.get_in_org(self.org, self.target.data) if self.target.data else None


class AssignForm(_Base):
    # A member picker: the membership id, and the email typed.
    member = HiddenField("Member", default="")
    member_email = StringField("Member's email", default="")

    def __init__(self, org, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.org = org

    def membership(self) -> Membership | None:
        membership, _asked = members.picked(self.org, _text(self.member_email), self.member.data, by="membership")
        return membership
