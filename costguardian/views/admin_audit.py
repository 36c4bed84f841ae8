"""Platform console: the audit log across organizations (support may read
it), filtered, 50 rows a page newest first, and exported as CSV."""
from __future__ import annotations

from flask import Blueprint, Response, request, stream_with_context

from costguardian import clock
from costguardian.authz import current_actor, platform_required
from costguardian.db import connected
from costguardian.extensions import db, htmx
from costguardian.rendering import render
from costguardian.services.platform import audit_search
from costguardian.services.team import audit

bp = Blueprint("admin_audit", __name__, url_prefix="/admin/audit")

PAGE = "admin/audit.html"
RESULTS, ROWS = "partials/admin/audit/_results.html", "partials/admin/audit/_rows.html"


def _context(filters, rows=(), next_before=None) -> dict:
    return {"filters": filters, "rows": rows, "next_before": next_before, "compact_detail": audit_search.compact}


@bp.get("/")
@platform_required("read")
def index():
    filters = audit_search.parse_filters(request.args)
    if filters.errors:
        return render(PAGE, RESULTS, status=422, **_context(filters))
    rows, next_before = audit_search.search(filters)
    org = audit_search.single_org(filters) if filters.before is None else None
    if org is not None:  # reading one organization's log
        audit.record(current_actor(), "platform.viewed", org=org, target=org, page="audit_log")
    # "Show older entries" asks for rows only; a filter change, for the whole results region.
    partial = ROWS if filters.before is not None and htmx else RESULTS
    return render(PAGE, partial, **_context(filters, rows, next_before))


@bp.get("/export.csv")
@platform_required("read")
def export():
    filters = audit_search.parse_filters(request.args)
    if filters.errors:
        return render(PAGE, PAGE, status=422, **_context(filters))
    upto = audit_search.start_export(filters, current_actor())

    def body():
        # The request's connection closes when the view returns, before the body is sent.
        with connected(db):
            yield from audit_search.export_csv(filters, upto)

    response = Response(stream_with_context(body()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{audit_search.filename(clock.now())}"'
    return response
