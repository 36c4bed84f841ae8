"""Platform console: Organizations. The list (search, status and plan
filters), one organization's whole picture (the read is audit-logged), and —
superadmins — create, suspend/reinstate, grant a plan by hand, force
features on or off, transfer ownership, and delete after a grace period.
services/platform/orgs.py holds the rules."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, request, url_for

from costguardian import clock
from costguardian.authz import current_actor, platform_required
from costguardian.models.billing import FEATURES
from costguardian.models.org import Organization
from costguardian.rendering import redirect_to, render
from costguardian.services.billing import plans
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.platform import orgs
from costguardian.services.team import orgs as team_orgs

bp = Blueprint("admin_orgs", __name__, url_prefix="/admin/organizations")

LIST_PAGE, RESULTS = "admin/orgs.html", "partials/admin/orgs/_results.html"
DETAIL_PAGE = "admin/org.html"


def _org_or_404(org_id: int) -> Organization:
    org = Organization.get_or_none(Organization.id == org_id) if 0 < org_id <= 2**31 - 1 else None
    if org is None:
        abort(404, "There is no such organization.")
    return org


def _list(status: int = 200, create_errors: dict | None = None):
    filters, page, errors = orgs.parse_filters(request.args)
    rows, total = orgs.search(filters, page)
    pages = max(1, -(-total // orgs.PER_PAGE))
    args = {k: v for k, v in filters.items() if v and v != "none"}
    return render(LIST_PAGE, RESULTS, status=status, rows=rows, total=total, page=page, pages=pages, args=args,
                  filters=filters, errors=errors, statuses=orgs.STATUSES, plans=plans.listed(),
                  time_zones=team_orgs.time_zones(), create_errors=create_errors or {},
                  form=request.form if create_errors else {}, month=orgs.month_bounds(clock.now())[0])


@bp.get("/")
@platform_required("read")
def index():
    return _list()


@bp.post("/")
@platform_required("write")
def create():
    form = request.form
    try:
        org = orgs.create(form.get("name", ""), form.get("owner_email", ""), current_actor(),
                          time_zone=form.get("time_zone") or "UTC")
    except ValidationError as exc:
        return _list(422, exc.errors)
    except RuleViolation as exc:
        return _list(422, {"": exc.message})
    flash(f"{org.name} was created; {form.get('owner_email', '').strip()} owns it.", "success")
    return redirect_to(url_for("admin_orgs.show", org_id=org.id))


def _detail(org: Organization, status: int = 200, errors: dict | None = None, record: bool = True):
    """The detail page; `errors` of a refused action: {form: {field: message}}."""
    context = orgs.detail(org, current_actor(), record=record)
    return render(DETAIL_PAGE, DETAIL_PAGE, status=status, errors=errors or {}, form=request.form,
                  user_link="admin_users.show" in current_app.view_functions, FEATURES=FEATURES,
                  grace_days=orgs.DELETION_GRACE.days, **context)


@bp.get("/<int:org_id>")
@platform_required("read")
def show(org_id: int):
    return _detail(_org_or_404(org_id))


def _act(org_id: int, form_name: str, action, success: str):
    """Run `action(org)`; refusals re-render the page (422) with the form's messages."""
    org = _org_or_404(org_id)
    try:
        action(org)
    except ValidationError as exc:
        return _detail(org, 422, {form_name: exc.errors}, record=False)
    except RuleViolation as exc:
        return _detail(org, 422, {form_name: {"": exc.message}}, record=False)
    flash(success.format(name=org.name), "success")
    return redirect_to(url_for("admin_orgs.show", org_id=org.id))


@bp.post("/<int:org_id>/suspend")
@platform_required("write")
def suspend(org_id: int):
    return _act(org_id, "suspend", lambda org: orgs.suspend(org, request.form.get("reason", ""), current_actor()),
                "{name} is suspended: its ingest API and gateway refuse calls, and its members see why.")


@bp.post("/<int:org_id>/unsuspend")
@platform_required("write")
def unsuspend(org_id: int):
    return _act(org_id, "suspend", lambda org: orgs.unsuspend(org, current_actor()),
                "{name} is reinstated: its ingest API and gateway accept calls again.")


@bp.post("/<int:org_id>/plan")
@platform_required("write")
def change_plan(org_id: int):
    return _act(org_id, "plan",
                lambda org: orgs.set_plan(org, request.form.get("plan", ""), current_actor()),
                "{name}'s plan was changed.")


@bp.post("/<int:org_id>/features")
@platform_required("write")
def change_features(org_id: int):
    choices = {name: request.form.get(f"feature.{name}", "inherit") for name in FEATURES}
    return _act(org_id, "features", lambda org: orgs.set_features(org, choices, current_actor()),
                "{name}'s features were saved.")


@bp.post("/<int:org_id>/owner")
@platform_required("write")
def transfer(org_id: int):
    return _act(org_id, "owner",
                lambda org: orgs.transfer_ownership(org, request.form.get("member", ""), current_actor()),
                "{name} has a new owner; the previous owners are admins now.")


@bp.post("/<int:org_id>/delete")
@platform_required("write")
def delete(org_id: int):
    return _act(org_id, "delete",
                lambda org: orgs.schedule_deletion(org, current_actor(), request.form.get("confirm", "")),
                f"{{name}} will be deleted in {orgs.DELETION_GRACE.days} days; until then it is suspended and "
                "the deletion can be cancelled.")


@bp.post("/<int:org_id>/cancel-deletion")
@platform_required("write")
def cancel_deletion(org_id: int):
    return _act(org_id, "delete", lambda org: orgs.cancel_deletion(org, current_actor()),
                "{name} will not be deleted.")
