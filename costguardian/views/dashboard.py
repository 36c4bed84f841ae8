"""The organization's home: what it has spent (empty until usage arrives)."""
from __future__ import annotations

from flask import Blueprint, g, render_template

from costguardian.authz import require_permission
from costguardian.models import Membership

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@require_permission("usage:read")
def index():
    member_count = Membership.in_org(g.org).count()
    return render_template("dashboard/index.html", member_count=member_count)
