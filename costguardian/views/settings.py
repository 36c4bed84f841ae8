"""Organization settings: name, time zone, display currency and the email
domain whose people join automatically."""
from __future__ import annotations

from flask import Blueprint, g

from costguardian.authz import current_actor, require_permission
from costguardian.forms import OrganizationForm, apply_errors
from costguardian.forms.invitations import JoinDomainForm
from costguardian.rendering import render, toast
from costguardian.services.team import orgs
from costguardian.services.errors import NotPermitted, ValidationError

bp = Blueprint("settings", __name__, url_prefix="/settings")

PAGE, FORM = "settings/index.html", "partials/settings/_org_form.html"
JOIN_FORM = "partials/settings/_join_domain.html"


def _join_form(submitted: bool = False) -> JoinDomainForm:
    """The domain-join form: as posted, or showing the organization's rule."""
    roles = [r for r in orgs.JOIN_ROLES if r in orgs.roles_actor_may_grant(g.org, current_actor())]
    if submitted:
        return JoinDomainForm(roles)
    form = JoinDomainForm(roles, formdata=None)
    form.join_domain.data = g.org.join_domain or ""
    form.join_domain_role.data = g.org.join_domain_role or "member"
    return form


@bp.get("/")
@require_permission("org:settings")
def index():
    form = OrganizationForm(obj=g.org)
    return render(PAGE, FORM, form=form, join_form=_join_form())


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
            response = render(PAGE, FORM, form=OrganizationForm(obj=g.org), saved=True, join_form=_join_form())
            return toast(response, "Settings saved.")
    return render(PAGE, FORM, status=422, form=form, join_form=_join_form())


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
    return render(PAGE, FORM, status=200 if valid else 422, form=form, join_form=_join_form())


@bp.post("/join-domain")
@require_permission("org:settings")
def join_domain():
    form = _join_form(submitted=True)
    if form.validate():
        try:
            orgs.update_join_domain(g.org, current_actor(), form.join_domain.data, form.join_domain_role.data)
        except ValidationError as exc:
            apply_errors(form, exc)
        except NotPermitted as exc:
            form.form_errors.append(exc.message)
        else:
            response = render(PAGE, JOIN_FORM, form=OrganizationForm(obj=g.org), join_form=_join_form(),
                              join_saved=True)
            return toast(response, "Domain rule saved.")
    return render(PAGE, JOIN_FORM, status=422, form=OrganizationForm(obj=g.org), join_form=form)
