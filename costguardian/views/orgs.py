"""Creating an organization (onboarding) and switching between them."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user

from costguardian.authz import current_actor, personal
from costguardian.forms import OrganizationForm, apply_errors
from costguardian.rendering import redirect_to
from costguardian.services.team import orgs
from costguardian.services.errors import ValidationError

bp = Blueprint("orgs", __name__, url_prefix="/orgs")


@bp.route("/new", methods=["GET", "POST"])
@personal
def new():
    form = OrganizationForm()
    if form.validate_on_submit():
        try:
            org = orgs.create_organization(form.name.data, current_user, current_actor(),
                                           time_zone=form.time_zone.data, currency=form.currency.data)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            session["org_id"] = org.id
            flash(f"{org.name} is ready. A few steps take it to its first priced call.", "success")
            return redirect(url_for("onboarding.start"))
    first = not g.get("memberships")
    status = 422 if request.method == "POST" else 200
    return render_template("orgs/new.html", form=form, first=first), status


@bp.post("/switch/<slug>")
@personal
def switch(slug: str):
    """Make another of the user's organizations the current one."""
    membership = orgs.membership_by_slug(current_user, slug)
    if membership is None:
        abort(404)
    session["org_id"] = membership.organization_id
    return redirect_to(url_for("dashboard.index"))
