"""Invitations: invite by email (many at once), resend, revoke, and the
public accept page where a new or existing account joins."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user

from costguardian import permissions
from costguardian.authz import current_actor, require_permission
from costguardian.extensions import limiter
from costguardian.forms import apply_errors
from costguardian.forms.invitations import AcceptSigninForm, AcceptSignupForm, InviteForm
from costguardian.rendering import render, toast
from costguardian.services.platform import settings as platform_settings
from costguardian.services.team import accounts, departments, invitations, members, orgs
from costguardian.services.billing import limits
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from costguardian.views.auth import INVITATION_SESSION_KEY as SESSION_KEY
from costguardian.views.auth import _start_session, verification_link

bp = Blueprint("invitations", __name__, url_prefix="/invitations")

PAGE, FORM, ROW = "invitations/index.html", "partials/invitations/_form.html", "partials/invitations/_row.html"
STATUSES = ("pending", "accepted", "expired", "revoked")


def _invite_form(**kwargs) -> InviteForm:
    return InviteForm(orgs.roles_actor_may_grant(g.org, current_actor()), members.departments(g.org), **kwargs)


def _page(form: InviteForm, status: int = 200, **extra):
    chosen = request.args.get("status", "")
    chosen = chosen if chosen in STATUSES else ""
    rows = invitations.listed(g.org, chosen, limit=500)
    return render(PAGE, FORM if status != 200 or extra.get("results") is not None else PAGE, status=status,
                  form=form, invitations=rows, status_filter=chosen, statuses=STATUSES,
                  RESULT_LABELS=invitations.RESULT_LABELS, **extra)


@bp.get("/")
@require_permission("members:manage")
def index():
    return _page(_invite_form())


@bp.post("/")
@require_permission("members:manage")
def invite():
    form = _invite_form()
    if not form.validate():
        return _page(form, 422)
    department = departments.get(g.org, form.department.data) if form.department.data else None
    try:
        results = invitations.invite(g.org, form.emails.data, form.role.data, current_actor(), department=department)
    except ValidationError as exc:
        apply_errors(form, exc)
        return _page(form, 422)
    except NotPermitted as exc:
        form.role.errors = list(form.role.errors) + [exc.message]
        return _page(form, 422)
    except limits.SeatLimit as exc:
        return _page(form, 422, seat_limit=exc)
    sent = sum(1 for r in results if r.ok)
    failed = len(results) - sent
    fresh = _invite_form(formdata=None)
    fresh.emails.data = "\n".join(r.address for r in results if not r.ok)  # what is left to fix
    fresh.role.data, fresh.department.data = form.role.data, form.department.data
    response = _page(fresh, 200, results=results)
    message = f"{sent} invitation{'s' if sent != 1 else ''} sent" + (f"; {failed} not sent (see the list)" if failed else "") + "."
    return toast(response, message, "error" if failed and not sent else "success")


def _invitation_or_404(invitation_id: int):
    invitation = invitations.get(g.org, invitation_id)
    if invitation is None:
        abort(404)
    return invitation


def _row(invitation, status: int = 200, error: str = ""):
    invitation = invitations.row_of(g.org, invitation.id)
    if not request.headers.get("HX-Request"):
        if error:
            flash(error, "error")
        return redirect(url_for("invitations.index"))
    return render(PAGE, ROW, status=status, i=invitation, error=error)


@bp.post("/<int:invitation_id>/resend")
@require_permission("members:manage")
def resend(invitation_id: int):
    invitation = _invitation_or_404(invitation_id)
    try:
        invitation = invitations.resend(invitation, current_actor())
    except (RuleViolation, NotPermitted) as exc:
        return toast(_row(invitation, 422, exc.message), exc.message, "error")
    return toast(_row(invitation), f"Invitation sent again to {invitation.email}.")


@bp.post("/<int:invitation_id>/revoke")
@require_permission("members:manage")
def revoke(invitation_id: int):
    invitation = _invitation_or_404(invitation_id)
    try:
        invitation = invitations.revoke(invitation, current_actor())
    except (RuleViolation, NotPermitted) as exc:
        return toast(_row(invitation, 422, exc.message), exc.message, "error")
    return toast(_row(invitation), f"The invitation for {invitation.email} is revoked.")


# --- the public accept page -------------------------------------------------------

def _unusable(message: str, status: int = 410):
    return render_template("invitations/unusable.html", message=message), status


def _joined(membership):
    session.pop(SESSION_KEY, None)
    session["org_id"] = membership.organization_id
    flash(f"Welcome to {membership.organization.name}. You joined as {membership.role}.", "success")
    if permissions.role_can(membership.role, "org:settings"):
        return redirect(url_for("dashboard.index"))
    return redirect(url_for("onboarding.welcome"))  # what their role lets them see, before the dashboard


def _email_key() -> str:
    invitation = invitations.by_token(request.view_args.get("token", "")) if request.view_args else None
    return "account:" + (invitation.email if invitation is not None else "")


@bp.route("/accept/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"], methods=["POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"], key_func=_email_key,
               deduct_when=lambda response: response.status_code == 422)
def accept(token: str):
    invitation = invitations.by_token(token)
    user = current_user._get_current_object() if current_user.is_authenticated else None
    try:
        invitations.check_can_accept(invitation, user)
    except NotPermitted as exc:
        return render_template("invitations/wrong_account.html", message=exc.message, invitation=invitation), 403
    except RuleViolation as exc:
        return _unusable(exc.message)
    existing = accounts.user_by_email(invitation.email) if user is None else user
    signup, signin = AcceptSignupForm(prefix="signup"), AcceptSigninForm(prefix="signin")
    if request.method == "GET":
        session[SESSION_KEY] = token  # picked up after an OIDC sign-in
        refusal = platform_settings.signup_refusal(invitation.email, "invitation") if existing is None else None
        if refusal:  # said before anyone fills the form in (the sign-up refuses it too)
            signup.form_errors.append(refusal)
    else:
        try:
            if user is not None:
                return _joined(invitations.accept(token, user, current_actor()))
            if existing is None and signup.validate_on_submit():
                try:
                    new_user = accounts.sign_up(invitation.email, signup.name.data or "", signup.password.data,
                                                current_actor(), channel="invitation")
                except ValidationError as exc:
                    apply_errors(signup, exc)
                else:
                    _start_session(new_user, method="signup")
                    # Accepting does not prove the mailbox (the link may have leaked); the
                    # confirmation email does, and only that lets domain join happen later.
                    accounts.send_verification_email(new_user, verification_link, current_actor())
                    return _joined(invitations.accept(token, new_user, current_actor()))
            elif existing is not None and signin.validate_on_submit():
                signed_in = accounts.authenticate(invitation.email, signin.password.data, current_actor())
                if signed_in is not None:
                    _start_session(signed_in)
                    return _joined(invitations.accept(token, signed_in, current_actor()))
                signin.form_errors.append("That password is not right for this account.")
        except (RuleViolation, NotPermitted) as exc:
            return _unusable(exc.message)
    status = 422 if request.method == "POST" else 200
    return render_template("invitations/accept.html", invitation=invitation, user=user, existing=existing,
                           signup=signup, signin=signin, token=token,
                           inviter=invitation.invited_by if invitation.invited_by_id else None), status

