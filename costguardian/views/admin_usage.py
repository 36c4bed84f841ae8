"""Platform console: system-wide spend and events by day, provider, model and
organization for a range of UTC days, from the hourly rollups; each table
exports as CSV."""
from __future__ import annotations

from flask import Blueprint, Response, abort, request

from costguardian import clock
from costguardian.authz import current_actor, platform_required
from costguardian.rendering import render
from costguardian.services.platform import stats
from costguardian.services.team import audit

bp = Blueprint("admin_usage", __name__, url_prefix="/admin/usage")

PAGE, REPORT = "admin/usage.html", "partials/admin/usage/_report.html"


@bp.get("/")
@platform_required("read")
def index():
    start, end, errors = stats.parse_range(request.args, clock.now().date())
    report = stats.usage(start, end)
    return render(PAGE, REPORT, status=422 if errors else 200, report=report, errors=errors,
                  form={"start": request.args.get("start", start.isoformat()),
                        "end": request.args.get("end", end.isoformat())})


@bp.get("/<table>.csv")
@platform_required("read")
def export(table: str):
    if table not in stats.EXPORTS:
        abort(404)
    start, end, errors = stats.parse_range(request.args, clock.now().date())
    if errors:
        abort(422, " ".join(f"{name}: {message}" for name, message in errors.items()))
    body = stats.usage_csv(table, stats.usage(start, end))
    audit.record(current_actor(), "platform.usage_exported", table=table, start=start.isoformat(),
                 end=end.isoformat())
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="usage-by-{table}-{start.isoformat()}-{end.isoformat()}.csv"'})

