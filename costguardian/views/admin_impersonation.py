"""Acting as a user (services/platform/impersonation.py has the rules):
start from the user's console page with a reason, stop from the banner."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, session, url_for
from flask_login import current_user

from costguardian import authz
from costguardian.authz import current_actor, personal, platform_required
from costguardian.models import User
from costguardian.models.org import MAX_ID
from costguardian.services.errors import NotPermitted, ValidationError
from costguardian.services.platform import impersonation

bp = Blueprint("admin_impersonation", __name__, url_prefix="/admin/impersonation")


def _user_page(user_id: int) -> str:
    from flask import current_app

    if "admin_users.show" in current_app.view_functions:
        return url_for("admin_users.show", user_id=user_id)
    return url_for("dashboard.index")


@bp.post("/start/<int:user_id>")
@platform_required("impersonate")
def start(user_id: int):
    target = User.get_or_none(User.id == user_id) if 0 < user_id <= MAX_ID else None
    if target is None:
        abort(404, "There is no such user.")
    admin = current_user._get_current_object()
    try:
        key = impersonation.start(admin, target, request.form.get("reason", ""), current_actor(),
                                  already_acting=g.get("impersonation") is not None)
    except ValidationError as exc:
        flash(exc.errors.get("reason") or exc.message, "error")
        return redirect(_user_page(user_id))
    except NotPermitted as exc:
        abort(403, exc.message)
    session[authz.IMPERSONATION_KEY] = key
    session.pop("org_id", None)  # the user's own first organization, not the admin's choice
    flash(f"You are now acting as {target.email} for at most 60 minutes.", "info")
    return redirect(url_for("dashboard.index"))


@bp.post("/stop")
@personal  # acts on the admin's own session, reachable while acting as someone
def stop():
    row = g.get("impersonation")
    if row is None:
        session.pop(authz.IMPERSONATION_KEY, None)
        return redirect(url_for("dashboard.index"))
    user_id = row.user_id
    authz.end_impersonation("stopped")
    session.pop("org_id", None)
    flash("You are yourself again.", "info")
    return redirect(_user_page(user_id))
