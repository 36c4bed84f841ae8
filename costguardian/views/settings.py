"""Organization settings: name, time zone, display currency and the email
domain whose people join automatically."""
from __future__ import annotations

import functools

from flask import Blueprint, abort, flash, g, redirect, request, send_file, session, url_for
from flask_login import current_user

from costguardian.authz import current_actor, require_permission
from costguardian.extensions import db, htmx
from costguardian.forms import OrganizationForm, apply_errors
from costguardian.forms.invitations import JoinDomainForm
from costguardian.rendering import render, toast
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from costguardian.services.ops import org_export, retention
from costguardian.services.team import domain_verification, orgs, self_service, visibility

bp = Blueprint("settings", __name__, url_prefix="/settings")

PAGE, FORM = "settings/index.html", "partials/settings/_org_form.html"
JOIN_FORM = "partials/settings/_join_domain.html"
RETENTION = "partials/settings/_retention.html"
VISIBILITY = "partials/settings/_visibility.html"
EXPORT_PAGE, EXPORT = "settings/export.html", "partials/settings/_export.html"


def _join_form(submitted: bool = False) -> JoinDomainForm:
    """The domain-join form: as posted, or showing the organization's rule."""
    roles = [r for r in orgs.JOIN_ROLES if r in orgs.roles_actor_may_grant(g.org, current_actor())]
    if submitted:
        return JoinDomainForm(roles)
    form = JoinDomainForm(roles, formdata=None)
    form.join_domain.data = g.org.join_domain or ""
    form.join_domain_role.data = g.org.join_domain_role or "member"
    return form


@bp.context_processor
def _domain_verification():
    """The TXT record that verifies the join domain, for the domain card."""
    org = g.get("org")
    if org is None or not org.join_domain:
        return {"verification": None, "txt_record": None}
    verification = domain_verification.for_domain(org, org.join_domain)
    if verification is None and org.join_domain_verified_at is None:
        try:
            verification = domain_verification.start(org, current_actor(), org.join_domain)
        except ValidationError:  # a domain saved before the public-suffix rule existed
            verification = None
    return {"verification": verification,
            "txt_record": domain_verification.record(verification) if verification is not None else None}


@bp.context_processor
def _data_and_deletion():
    """The retention card's numbers and the owners' deletion card."""
    org = g.get("org")
    if org is None:
        return {}
    return {"retention_plan_days": retention.plan_days(org), "retention_days": retention.effective_days(org),
            "retention_limits": (retention.MIN_DAYS, retention.MAX_DAYS),
            "deletion_refusal": self_service.deletion_refusal(org) if org.delete_after is None else None,
            "deletion_by_owner": self_service.scheduled_by_owner(org),
            "org_export": org_export.latest(org) if _can_export() else None}


def _can_export() -> bool:
    membership = g.get("membership")
    return membership is not None and membership.role == "owner" and g.get("impersonation") is None


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
        domain, actor = domain_verification.ascii_domain(form.join_domain.data), current_actor()
        try:
            with db.atomic():
                # The rule's own checks first (they change nothing); then the
                # record to publish, which refuses a domain another
                # organization verified; nothing is saved when either refuses.
                orgs.validated_join_domain(domain, form.join_domain_role.data, orgs.roles_actor_may_grant(g.org, actor))
                if domain and domain != g.org.join_domain:
                    domain_verification.start(g.org, actor, domain)
                orgs.update_join_domain(g.org, actor, domain, form.join_domain_role.data)
        except ValidationError as exc:
            errors = {("join_domain" if key == "domain" else key): message for key, message in exc.errors.items()}
            apply_errors(form, ValidationError(errors))
        except NotPermitted as exc:
            form.form_errors.append(exc.message)
        else:
            response = render(PAGE, JOIN_FORM, form=OrganizationForm(obj=g.org), join_form=_join_form(),
                              join_saved=True)
            return toast(response, "Domain rule saved.")
    return render(PAGE, JOIN_FORM, status=422, form=OrganizationForm(obj=g.org), join_form=form)


@bp.post("/join-domain/check")
@require_permission("org:settings")
def check_domain():
    """Look for the domain's TXT record now ("Check now")."""
    form = _join_form()
    if not g.org.join_domain:
        form.join_domain.errors = ["Save a domain first."]
        return render(PAGE, JOIN_FORM, status=422, form=OrganizationForm(obj=g.org), join_form=form)
    try:
        verification = domain_verification.check(g.org, current_actor(), g.org.join_domain)
    except (ValidationError, RuleViolation) as exc:
        form.join_domain.errors = [getattr(exc, "errors", {}).get("domain") or exc.message]
        return render(PAGE, JOIN_FORM, status=422, form=OrganizationForm(obj=g.org), join_form=form)
    if verification.verified_at is None:
        form.join_domain.errors = [verification.last_error or "The record is not there yet."]
        return render(PAGE, JOIN_FORM, status=422, form=OrganizationForm(obj=g.org), join_form=form)
    response = render(PAGE, JOIN_FORM, form=OrganizationForm(obj=g.org), join_form=_join_form())
    return toast(response, f"{verification.domain} is verified.")


@bp.post("/retention")
@require_permission("org:settings")
def update_retention():
    value = request.form.get("usage_event_retention_days", "")
    try:
        retention.update_setting(g.org, current_actor(), value)
    except ValidationError as exc:
        return render(PAGE, RETENTION, status=422, form=OrganizationForm(obj=g.org), join_form=_join_form(),
                      retention_errors=exc.errors, retention_value=value)
    response = render(PAGE, RETENTION, form=OrganizationForm(obj=g.org), join_form=_join_form(), retention_saved=True)
    return toast(response, "Retention saved.")


@bp.post("/visibility")
@require_permission("org:settings")
def update_visibility():
    visibility.set_members_see_everyone(g.org, current_actor(), request.form.get("members_see_everyone") == "on")
    response = render(PAGE, VISIBILITY, form=OrganizationForm(obj=g.org), join_form=_join_form(),
                      visibility_saved=True)
    return toast(response, "Saved: what members see.")


def _in_named_org(view):
    """Links in notifications name their organization (`?org=slug`): an owner
    of several organizations lands in that one, not in the one they had open."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        slug = request.args.get("org")
        if slug and current_user.is_authenticated and (g.get("org") is None or slug != g.org.slug):
            membership = orgs.membership_by_slug(current_user, slug)
            if membership is not None:
                session["org_id"] = membership.organization_id
                return redirect(url_for(request.endpoint, **request.view_args))
        return view(*args, **kwargs)

    return wrapped


def _export_or_404(export_id: int):
    try:
        job = org_export.for_owner(g.org, current_actor(), export_id)
    except NotPermitted as exc:
        abort(403, exc.message)
    if job is None:
        abort(404)
    return job


@bp.post("/exports")
@require_permission("org:settings")
def request_export():
    """Export all data: a background task builds the archive (owners only);
    a second click while one runs shows the running one."""
    try:
        job, started = org_export.request_export(g.org, current_actor())
    except NotPermitted as exc:
        abort(403, exc.message)
    message = ("Export started: you will be notified when it is ready." if started
               else "An export is already running; here is its progress.")
    if not htmx:
        flash(message, "success")
        return redirect(url_for("settings.index", _anchor="export-and-delete"))
    return toast(render(EXPORT, EXPORT, org_export=job), message)


@bp.get("/exports/<int:export_id>")
@_in_named_org
@require_permission("org:settings")
def export_status(export_id: int):
    """The export's page (the notification's link), or its status fragment while htmx polls."""
    return render(EXPORT_PAGE, EXPORT, org_export=_export_or_404(export_id))


@bp.get("/exports/<int:export_id>/download")
@_in_named_org
@require_permission("org:settings")
def download_export(export_id: int):
    job = _export_or_404(export_id)
    path = org_export.archive_path(job)
    if path is None:
        return render(EXPORT_PAGE, EXPORT_PAGE, status=410, org_export=job)
    org_export.record_download(g.org, current_actor(), job)
    return send_file(path, mimetype="application/zip", as_attachment=True,
                     download_name=org_export.download_name(g.org, job), max_age=0)


@bp.post("/delete")
@require_permission("org:settings")
def schedule_deletion():
    try:
        self_service.schedule_org_deletion(g.org, current_actor(), request.form.get("confirm", ""))
    except NotPermitted as exc:
        abort(403, exc.message)
    except (ValidationError, RuleViolation) as exc:
        errors = getattr(exc, "errors", None) or {"confirm": exc.message}
        return render(PAGE, PAGE, status=422, form=OrganizationForm(obj=g.org), join_form=_join_form(),
                      deletion_errors=errors)
    flash(f"{g.org.name} will be deleted on {g.org.delete_after:%Y-%m-%d}. You can cancel until then.", "warning")
    return redirect(url_for("settings.index"))


@bp.post("/delete/cancel")
@require_permission("org:settings")
def cancel_deletion():
    try:
        self_service.cancel_org_deletion(g.org, current_actor())
    except NotPermitted as exc:
        abort(403, exc.message)
    except RuleViolation as exc:
        flash(exc.message, "error")
        return redirect(url_for("settings.index"))
    flash(f"{g.org.name} will not be deleted.", "success")
    return redirect(url_for("settings.index"))
