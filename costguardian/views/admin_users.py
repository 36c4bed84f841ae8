"""Platform console: Users. Search and filter every account, read one
account's memberships, sessions, audit trail, keys and impersonations (the
read is audit-logged), and — superadmins — edit, disable or enable, send a
password-reset link, delete, and disable/enable in bulk. Support may export.
services/platform/users.py holds the rules."""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, request, url_for
from flask_login import current_user

from costguardian import clock
from costguardian.authz import current_actor, platform_can, platform_required
from costguardian.db import connected
from costguardian.extensions import db
from costguardian.rendering import external_url, redirect_to, render
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from costguardian.services.platform import impersonation, users
from costguardian.services.team import audit
from costguardian.views.auth import verification_link

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")

LIST_PAGE, RESULTS = "admin/users.html", "partials/admin/users/_results.html"
DETAIL_PAGE, EDIT_FORM = "admin/user.html", "partials/admin/users/_edit_form.html"
BULK_LIMIT = 500  # ids one bulk action takes (a page holds 50)


def _user_or_404(user_id: int):
    user = users.get(user_id)
    if user is None:
        abort(404, "There is no such user.")
    return user


def _selected_ids() -> list[int]:
    ids = []
    for raw in request.form.getlist("ids")[:BULK_LIMIT]:
        try:
            ids.append(int(raw))
        except ValueError:
            continue
    return ids


def _list_args(filters: dict) -> dict:
    """The filters as query-string arguments (for links and the export)."""
    active = filters.get("active_days")
    disabled = filters.get("disabled")
    args = {"q": filters.get("q") or None, "role": filters.get("role") or None,
            "disabled": None if disabled is None else ("yes" if disabled else "no"),
            "unconfirmed": "yes" if filters.get("unconfirmed") else None,
            "active": str(active) if active else None, "org": filters.get("org_ref") or None}
    return {k: v for k, v in args.items() if v is not None}


@bp.get("/")
@platform_required("read")
def index():
    filters, page, errors = users.parse_filters(request.args)
    rows, total = users.search(filters, page)
    pages = max(1, -(-total // users.PER_PAGE))
    return render(LIST_PAGE, RESULTS, users=rows, total=total, page=page, pages=pages, filters=filters,
                  errors=errors, args=_list_args(filters), memberships=users.memberships_of(rows),
                  role_filters=users.ROLE_FILTERS, active_days=users.ACTIVE_DAYS)


def _csv(filters: dict) -> Response:
    def body():
        with connected(db):  # the request's connection closes before the body is sent
            yield from users.export_csv(filters)

    response = Response(body(), mimetype="text/csv")
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = f'attachment; filename="users-{stamp}.csv"'
    return response


@bp.get("/export.csv")
@platform_required("read")
def export():
    """The whole filtered list as CSV (a read: support may export)."""
    filters, _, _ = users.parse_filters(request.args)
    audit.record(current_actor(), "platform.users_exported", filters=_list_args(filters))
    return _csv(filters)


@bp.post("/export")
@platform_required("read")
def export_selected():
    """The ticked users as CSV; nothing ticked: the whole filtered list."""
    filters, _, _ = users.parse_filters(request.form)
    ids = _selected_ids()
    if ids:
        filters = {"ids": ids}
    audit.record(current_actor(), "platform.users_exported", filters=_list_args(filters) if not ids else {},
                 users=ids)
    return _csv(filters)


@bp.post("/bulk")
@platform_required("write")
def bulk():
    """Disable or enable the ticked users; refusals (yourself, the last
    superadmin) are reported, the others go through."""
    action = request.form.get("action", "")
    if action not in ("disable", "enable"):
        abort(400, "Choose disable or enable.")
    ids = _selected_ids()
    back = url_for("admin_users.index", **_list_args(users.parse_filters(request.form)[0]))
    if not ids:
        flash("Tick at least one user first.", "error")
        return redirect_to(back)
    done, refused = [], []
    actor = current_actor()
    for user in users.search({"ids": ids}, 1, BULK_LIMIT)[0]:
        if user.is_disabled == (action == "disable"):
            continue
        try:
            users.set_disabled(user, action == "disable", actor)
            done.append(user.email)
        except (RuleViolation, NotPermitted) as exc:
            refused.append(f"{user.email} ({exc.message})")
    verb = "disabled" if action == "disable" else "enabled"
    flash(f"{len(done)} user(s) {verb}." if done else f"Nobody was {verb}.", "success" if done else "info")
    if refused:
        flash("Refused: " + "; ".join(refused), "error")
    return redirect_to(back)


def _detail(user, status: int = 200, *, partial: str = DETAIL_PAGE, form=None, form_errors=None,
            action_errors=None):
    org_link = "admin_orgs.show" in current_app.view_functions
    refusal = impersonation.refusal(current_user._get_current_object(), user) \
        if platform_can("impersonate") else None
    context = dict(users.detail(user), user=user, org_link=org_link, impersonation_refusal=refusal,
                   impersonations=impersonation.history_for(user), delete_refusal=users.delete_refusal(
                       user, current_actor()),
                   form=form or {"name": user.name, "email": user.email, "platform_role": user.platform_role},
                   form_errors=form_errors or {}, action_errors=action_errors or {})
    return render(DETAIL_PAGE, partial, status=status, **context)


@bp.get("/<int:user_id>")
@platform_required("read")
def show(user_id: int):
    user = _user_or_404(user_id)
    audit.record(current_actor(), "platform.viewed", target=user, page="user", email=user.email)
    return _detail(user)


@bp.post("/<int:user_id>/edit")
@platform_required("write")
def edit(user_id: int):
    user = _user_or_404(user_id)
    form = {"name": request.form.get("name", ""), "email": request.form.get("email", ""),
            "platform_role": request.form.get("platform_role", "")}
    before = user.email
    try:
        users.update_user(user, current_actor(), name=form["name"], email=form["email"],
                          platform_role=form["platform_role"], link_for=verification_link)
    except ValidationError as exc:
        return _detail(users.get(user_id), 422, partial=EDIT_FORM, form=form, form_errors=exc.errors)
    except NotPermitted as exc:
        abort(403, exc.message)
    if user.email != before:
        flash(f"Saved. {user.email} must be confirmed: the link went to the new address, and every session of "
              "this user ended.", "success")
    else:
        flash("Saved.", "success")
    return redirect_to(url_for("admin_users.show", user_id=user.id))


def _set_disabled(user_id: int, disabled: bool):
    user = _user_or_404(user_id)
    try:
        users.set_disabled(user, disabled, current_actor())
    except RuleViolation as exc:
        return _detail(user, 409, action_errors={"disable": exc.message})
    except NotPermitted as exc:
        abort(403, exc.message)
    flash(f"{user.email} is disabled: every session ended and sign-in is refused." if disabled
          else f"{user.email} can sign in again.", "success")
    return redirect_to(url_for("admin_users.show", user_id=user.id))


@bp.post("/<int:user_id>/disable")
@platform_required("write")
def disable(user_id: int):
    return _set_disabled(user_id, True)


@bp.post("/<int:user_id>/enable")
@platform_required("write")
def enable(user_id: int):
    return _set_disabled(user_id, False)


@bp.post("/<int:user_id>/password-reset")
@platform_required("write")
def password_reset(user_id: int):
    user = _user_or_404(user_id)
    try:
        users.send_password_reset(user, current_actor(),
                                  link_for=lambda token: external_url("auth.reset_password", token=token),
                                  ttl_minutes=current_app.config["PASSWORD_RESET_TTL_MINUTES"])
    except RuleViolation as exc:
        return _detail(user, 409, action_errors={"reset": exc.message})
    except NotPermitted as exc:
        abort(403, exc.message)
    flash(f"A password-reset link went to {user.email}.", "success")
    return redirect_to(url_for("admin_users.show", user_id=user.id))


@bp.post("/<int:user_id>/delete")
@platform_required("write")
def delete(user_id: int):
    user = _user_or_404(user_id)
    email = user.email
    try:
        users.delete_user(user, current_actor(), request.form.get("confirm", ""))
    except ValidationError as exc:
        return _detail(user, 422, action_errors={"confirm": exc.errors.get("confirm", exc.message)})
    except RuleViolation as exc:
        return _detail(user, 409, action_errors={"delete": exc.message})
    except NotPermitted as exc:
        abort(403, exc.message)
    flash(f"{email} was deleted.", "success")
    return redirect_to(url_for("admin_users.index"))
