"""Organization settings: name, time zone and display currency."""
from __future__ import annotations

from flask import Blueprint, g

from costguardian.authz import current_actor, require_permission
from costguardian.forms import OrganizationForm, apply_errors
from costguardian.rendering import render, toast
from costguardian.services import orgs
from costguardian.services.errors import ValidationError

bp = Blueprint("settings", __name__, url_prefix="/settings")

PAGE, FORM = "settings/index.html", "partials/settings/_org_form.html"


@bp.get("/")
@require_permission("org:settings")
def index():
    form = OrganizationForm(obj=g.org)
    return render(PAGE, FORM, form=form)


@bp.post("/")
@require_permission("org:settings")
def update():
    form = OrganizationForm()
    if form.validate():
        try:
            orgs.update_settings(g.org, current_actor(), form.name.data, form.time_zone.data, form.currency.data)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            response = render(PAGE, FORM, form=OrganizationForm(obj=g.org), saved=True)
            return toast(response, "Settings saved.")
    return render(PAGE, FORM, status=422, form=form)


@bp.post("/validate")
@require_permission("org:settings")
def validate():
    """Inline validation while typing: the form with its errors, nothing saved."""
    form = OrganizationForm()
    valid = form.validate()
    if valid:
        try:
            orgs.validated_settings(form.name.data, form.time_zone.data, form.currency.data)
        except ValidationError as exc:
            apply_errors(form, exc)
            valid = False
    return render(PAGE, FORM, status=200 if valid else 422, form=form)
