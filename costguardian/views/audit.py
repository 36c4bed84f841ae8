"""The organization's audit log: every row with its details, filtered by who
and what as the activity feed is, and downloadable as CSV."""
from __future__ import annotations

from flask import Blueprint, Response, g, request, stream_with_context, url_for

from costguardian.authz import require_permission
from costguardian.db import connected
from costguardian.extensions import db, htmx
from costguardian.rendering import render
from costguardian.services.team import activity, audit_csv

bp = Blueprint("audit", __name__, url_prefix="/audit")

PER_PAGE = 50
MAX_PAGE = 100_000


def _filters() -> tuple[int | None, str]:
    actor_id = request.args.get("member", type=int)
    if actor_id is not None and not 0 < actor_id <= 2**31 - 1:
        actor_id = None
    return actor_id, (request.args.get("action") or "").strip()[:64]


@bp.get("/")
@require_permission("audit:read")
def index():
    actor_id, action = _filters()
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)
    rows, has_next = activity.feed(g.org, actor_id=actor_id, action=action, page=page, per_page=PER_PAGE)
    params = {k: v for k, v in (("member", actor_id), ("action", action)) if v}
    context = {"rows": rows, "page": page, "has_next": has_next, "params": params, "actor_id": actor_id,
               "action": action, "families": activity.FAMILIES, "actor_name": activity.actor_name,
               "export_url": url_for("audit.export", **params)}
    if not htmx or htmx.history_restore_request:  # the filter's choices: only the whole page shows them
        context.update(actors=activity.actors(g.org), actions=activity.actions(g.org))
    response = render("audit/index.html", "partials/audit/_rows.html", **context)
    if htmx and page == 1 and not htmx.history_restore_request:
        response.headers["HX-Push-Url"] = url_for("audit.index", **params)
    return response


@bp.get("/export.csv")
@require_permission("audit:read")
def export():
    actor_id, action = _filters()
    org = g.org

    def body():
        with connected(db):  # the request's connection closes when the view returns
            yield from audit_csv.rows_csv(org, actor_id, action)

    response = Response(stream_with_context(body()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{audit_csv.filename(org)}"'
    return response
