"""The organization's members and their roles."""
from __future__ import annotations

from flask import Blueprint, abort, g, request, url_for
from flask_login import current_user

from costguardian import permissions
from costguardian.authz import current_actor, require_permission
from costguardian.rendering import redirect_to, render, toast
from costguardian.models import Membership
from costguardian.services import orgs
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError

bp = Blueprint("members", __name__, url_prefix="/members")

PAGE, ROW = "members/index.html", "partials/members/_row.html"


def _membership_or_404(membership_id: int) -> Membership:
    membership = Membership.get_in_org(g.org, membership_id)
    if membership is None:
        abort(404)
    return membership


def _grantable() -> list[str]:
    return permissions.grantable_roles(g.membership.role)


@bp.get("/")
@require_permission("members:read")
def index():
    return render(PAGE, PAGE, members=list(orgs.members(g.org)), grantable=_grantable())


@bp.post("/<int:membership_id>/role")
@require_permission("members:manage")
def change_role(membership_id: int):
    membership = _membership_or_404(membership_id)
    try:
        membership = orgs.change_role(membership, request.form.get("role", ""), current_actor())
    except (ValidationError, RuleViolation, NotPermitted) as exc:
        fresh = _membership_or_404(membership_id)
        response = render(PAGE, ROW, status=422, m=fresh, grantable=_grantable(), error=exc.message)
        return toast(response, exc.message, "error")
    response = render(PAGE, ROW, m=membership, grantable=_grantable())
    return toast(response, f"{membership.user.display_name} is now {membership.role}.")


@bp.post("/<int:membership_id>/remove")
@require_permission("members:manage")
def remove(membership_id: int):
    membership = _membership_or_404(membership_id)
    try:
        orgs.remove_member(membership, current_actor())
    except (RuleViolation, NotPermitted) as exc:
        response = render(PAGE, ROW, status=422, m=membership, grantable=_grantable(), error=exc.message)
        return toast(response, exc.message, "error")
    if membership.user_id == current_user.id:
        return redirect_to(url_for("dashboard.index"))
    response = render(PAGE, ROW, removed=True, m=membership, grantable=_grantable())
    return toast(response, f"{membership.user.display_name} was removed.")
