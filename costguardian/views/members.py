"""The organization's members: search, filters, pages, one-at-a-time and
bulk role changes, department moves and removals."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, request, url_for
from flask_login import current_user

from costguardian import permissions
from costguardian.authz import SESSIONLESS_ENDPOINTS, current_actor, require_permission
from costguardian.rendering import redirect_to, render, toast
from costguardian.services.team import departments
from costguardian.services.team import members as members_service
from costguardian.services.team import orgs
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError

bp = Blueprint("members", __name__, url_prefix="/members")

PAGE, ROW, TABLE = "members/index.html", "partials/members/_row.html", "partials/members/_table.html"
CONFIRM = "members/confirm_bulk.html"
PICKS = "partials/members/_picks.html"


@bp.before_app_request
def _last_seen():
    """Coalesced "last active": at most one write per user every few minutes."""
    if request.endpoint is None or request.endpoint in SESSIONLESS_ENDPOINTS:
        return
    if getattr(current_app.view_functions.get(request.endpoint), "api_key_auth", False):
        return  # an API call: its key, not a person's session
    if current_user.is_authenticated:
        members_service.touch_last_seen(current_user._get_current_object())


def _membership_or_404(membership_id: int):
    membership = members_service.get(g.org, membership_id)
    if membership is None:
        abort(404)
    return membership


def _department_or_none(raw: str):
    """The department a form names ("" for none); 404 for another tenant's id."""
    if not raw:
        return None
    department = departments.get(g.org, raw)
    if department is None:
        abort(404)
    return department


def _context(query=None, **extra) -> dict:
    query = query or members_service.MemberQuery.from_args(request.args)
    return dict(query=query, result=members_service.page_of_members(g.org, query),
                departments=members_service.departments(g.org), grantable=_grantable(),
                roles=list(permissions.ROLES), headcount=members_service.headcount(g.org), **extra)


def _grantable() -> list[str]:
    return permissions.grantable_roles(g.membership.role)


@bp.get("/")
@require_permission("members:read")
def index():
    context = _context()
    template = TABLE if request.headers.get("HX-Target") == "members-table" else PAGE
    return render(PAGE, template, **context)


@bp.get("/pick")
@require_permission("members:read")
def pick():
    """A member picker's suggestions (partials/members/_picker.html): at most
    20 <option>s of this organization's members matching what is typed, read
    from the parameter named by `field` (the picker's own input) or `q`."""
    field = request.args.get("field", "q")
    text = request.args.get(field if field.isidentifier() else "q", "")
    return render(PICKS, PICKS, matches=members_service.matching(g.org, text))


@bp.post("/<int:membership_id>/role")
@require_permission("members:manage")
def change_role(membership_id: int):
    membership = _membership_or_404(membership_id)
    try:
        membership = orgs.change_role(membership, request.form.get("role", ""), current_actor())
    except (ValidationError, RuleViolation, NotPermitted) as exc:
        return _row_error(membership_id, exc.message)
    response = _row(membership)
    return toast(response, f"{membership.user.display_name} is now {membership.role}.")


@bp.post("/<int:membership_id>/department")
@require_permission("members:manage")
def change_department(membership_id: int):
    membership = _membership_or_404(membership_id)
    department = _department_or_none(request.form.get("department", ""))
    try:
        membership = orgs.move_to_department(membership, department, current_actor())
    except (ValidationError, RuleViolation, NotPermitted) as exc:
        return _row_error(membership_id, exc.message)
    response = _row(membership)
    where = department.name if department is not None else "no department"
    return toast(response, f"{membership.user.display_name} moved to {where}.")


@bp.post("/<int:membership_id>/remove")
@require_permission("members:manage")
def remove(membership_id: int):
    membership = _membership_or_404(membership_id)
    try:
        orgs.remove_member(membership, current_actor())
    except (RuleViolation, NotPermitted) as exc:
        return _row_error(membership_id, exc.message)
    if membership.user_id == current_user.id:
        return redirect_to(url_for("dashboard.index"))
    response = render(PAGE, ROW, removed=True, m=membership, grantable=_grantable())
    return toast(response, f"{membership.user.display_name} was removed.")


def _row(membership, status: int = 200, error: str = ""):
    membership = _membership_or_404(membership.id)
    spend = members_service.spend_this_month(g.org, [membership])
    if not request.headers.get("HX-Request"):
        return redirect_to(url_for("members.index"))
    return render(PAGE, ROW, status=status, m=membership, grantable=_grantable(), spend=spend,
                  departments=members_service.departments(g.org), error=error)


def _row_error(membership_id: int, message: str):
    fresh = _membership_or_404(membership_id)
    if not request.headers.get("HX-Request"):
        return render(PAGE, PAGE, status=422, **_context(errors=[message]))
    return toast(_row(fresh, 422, message), message, "error")


@bp.post("/bulk")
@require_permission("members:manage")
def bulk():
    """One action on the checked members. Without JavaScript a confirmation
    page comes first (htmx asks with hx-confirm and sends confirm=1)."""
    action = request.form.get("action", "")
    ids = request.form.getlist("ids")
    query = members_service.MemberQuery.from_args(request.args)
    role = request.form.get("role", "")
    department = _department_or_none(request.form.get("department", "")) if action == "department" else None
    errors = []
    if action not in members_service.BULK_ACTIONS:
        errors.append("Choose what to do with the selected members.")
    if not ids:
        errors.append("Select at least one member.")
    if action == "role" and role not in permissions.ROLES:
        errors.append("Choose the new role.")
    if errors:
        response = render(PAGE, TABLE, status=422, **_context(query, errors=errors))
        return toast(response, errors[0], "error")
    if request.form.get("confirm") != "1":
        selected = list(members_service.selected(g.org, ids))
        return render(CONFIRM, CONFIRM, action=action, role=role, department=department, selected=selected,
                      query=query)
    outcomes = members_service.bulk_apply(g.org, ids, action, current_actor(), role=role, department=department)
    done = sum(1 for o in outcomes if o.ok)
    refused = len(outcomes) - done
    if not request.headers.get("HX-Request"):
        return render(PAGE, PAGE, status=200 if not refused else 422, **_context(query, outcomes=outcomes))
    response = render(PAGE, TABLE, **_context(query, outcomes=outcomes))
    summary = f"{done} changed" + (f", {refused} refused (see the list)" if refused else "") + "."
    return toast(response, summary, "error" if refused else "success")
