"""Budget reports: the department allocation of an organization-wide budget,
and every budget of a period kind for one period (page, CSV, print). Routes
on the budgets blueprint (views.budgets); the numbers come from
services.budgets.reports."""
from __future__ import annotations

import io

from flask import Response, g, request, url_for

from costguardian.authz import require_permission
from costguardian.extensions import htmx
from costguardian.rendering import render
from costguardian.services.budgets import periods as budget_periods, budgets, reports
from costguardian.services.usage import exports
from costguardian.views.budgets import bp

ALLOCATION, ALLOCATION_TABLE = "budgets/allocation.html", "partials/budgets/_allocation.html"
REPORT, REPORT_TABLE = "budgets/report.html", "partials/budgets/_report.html"

CALENDAR_PERIODS = {k: v for k, v in budget_periods.PERIODS.items() if k != "custom"}
MAX_OFFSET = 120
REPORT_COLUMNS = ["budget", "scope", "period_start", "period_end", "enforcement", "limit_usd", "spend_usd",
                  "percent", "state", "requests", "alerts"]


# --- department allocation ----------------------------------------------------------

@bp.get("/allocation")
@require_permission("budgets:read")
def allocation_view():
    kind = request.args.get("period", "monthly")
    if kind not in CALENDAR_PERIODS:
        kind = "monthly"
    chosen = request.args.get("budget", "")
    chosen_id = int(chosen) if chosen.isascii() and chosen.isdigit() else None
    context = reports.allocation(g.org, kind, chosen_id)
    response = render(ALLOCATION, ALLOCATION_TABLE, periods=CALENDAR_PERIODS, **context)
    if htmx and not htmx.boosted:
        params = {"period": kind}
        if context["org_budget"] is not None and chosen_id is not None:
            params["budget"] = context["org_budget"].id
        response.headers["HX-Push-Url"] = url_for("budgets.allocation_view", **params)
    return response


# --- the report ---------------------------------------------------------------------------

def alert_label(alert) -> str:
    if alert.kind == "threshold":
        return f"{alert.threshold}%"
    if alert.kind == "forecast":
        return "forecast to exceed"
    if alert.kind == "resolved":
        return "back under" + (f" {alert.threshold}%" if alert.threshold else "")
    return alert.kind


def _report_args() -> tuple[str, int]:
    kind = request.args.get("period", "monthly")
    if kind not in budget_periods.PERIODS:
        kind = "monthly"
    offset = request.args.get("offset", "0")
    offset = min(int(offset), MAX_OFFSET) if offset.isascii() and offset.isdigit() else 0
    return kind, offset


@bp.get("/report")
@require_permission("budgets:read")
def report_view():
    kind, offset = _report_args()
    context = reports.report(g.org, kind, offset)
    response = render(REPORT, REPORT_TABLE, periods=budget_periods.PERIODS, states=budgets.STATES,
                      alert_label=alert_label, enforcement=budgets.ENFORCEMENT, **context)
    if htmx and not htmx.boosted:
        response.headers["HX-Push-Url"] = url_for("budgets.report_view", period=kind, offset=offset)
    return response


@bp.get("/report.csv")
@require_permission("budgets:read")
def report_csv():
    kind, offset = _report_args()
    context = reports.report(g.org, kind, offset)
    buffer = io.StringIO()
    writer = exports._SafeWriter(buffer)
    writer.writerow(REPORT_COLUMNS)
    for row in context["rows"]:
        writer.writerow([row.budget.name, row.scope, row.period.first_day.isoformat(), row.period.last_day.isoformat(),
                         row.budget.enforcement, budgets.usd(row.limit), budgets.usd(row.spend),
                         f"{row.percent:.1f}", budgets.STATES[row.state], row.requests,
                         "; ".join(f"{alert_label(a)} ({a.created_at.strftime('%Y-%m-%d %H:%M')} UTC)"
                                   for a in row.alerts)])
    label = context["period"].first_day.isoformat() if context["period"] else "custom"
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{g.org.slug}-budgets-{kind}-{label}.csv"'
    return response
