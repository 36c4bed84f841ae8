"""The organization's audit log."""
from __future__ import annotations

from flask import Blueprint, g, request

from costguardian.authz import require_permission
from costguardian.rendering import render
from costguardian.services.team import audit

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.get("/")
@require_permission("audit:read")
def index():
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), 100_000)
    rows, has_next = audit.for_org(g.org, page=page)
    return render("audit/index.html", "partials/audit/_rows.html", rows=rows, page=page, has_next=has_next)
