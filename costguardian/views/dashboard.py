"""The organization's home: this month's spend against last month's, today,
the top models, people, departments and keys, and 30 days of daily spend,
all from the hourly rollups in the organization's time zone (an empty state
until usage arrives)."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, g, render_template, request, url_for

from costguardian.authz import can, require_permission
from costguardian.extensions import htmx
from costguardian.rendering import render
from costguardian.services import onboarding
from costguardian.services.team import members
from costguardian.services.usage import ingest, queries as usage_queries
from costguardian.services.usage.queries import UsageFilter
from costguardian.views.usage import chart_data, prices_url

bp = Blueprint("dashboard", __name__)

PAGE, CHART = "dashboard/index.html", "partials/dashboard/_daily_chart.html"
STACKS = {"provider": "By provider", "model": "By model"}
CHART_DAYS = 30
TOP_ROWS = 5
UNPRICED_ROWS = 5
# (service group, title, explorer filter, what the explorer groups that filter by)
TOPS = (("model", "Top models", "model", "day"), ("user", "Top users", "user", "day"),
        ("department", "Top departments", "department", "user"), ("api_key", "Top keys", "key", "day"))


def _top_tables(org, month: UsageFilter) -> list[dict]:
    tables = []
    by_group = usage_queries.summarize_many(org, month, tuple(group for group, *_ in TOPS))
    for group, title, param, then in TOPS:
        rows = by_group[group]
        links = [url_for("usage.index", **{param: row.key, "group_by": then})
                 if not (group == "user" and not row.key) else None for row in rows[:TOP_ROWS]]
        tables.append({"title": title, "group": group, "rows": list(zip(rows[:TOP_ROWS], links)),
                       "more": max(len(rows) - TOP_ROWS, 0),
                       "explore": url_for("usage.index", group_by=param)})
    return tables


@bp.get("/")
@require_permission("usage:read")
def index():
    org = g.org
    checklist = onboarding.checklist(org) if can("org:settings") else None
    if not usage_queries.has_usage(org):
        return render_template(PAGE, has_usage=False, member_count=members.headcount(org), setup_checklist=checklist)
    stack = request.args.get("stack")
    stack = stack if stack in STACKS else "provider"
    day = usage_queries.today(org)
    context = {"has_usage": True, "stack": stack, "stacks": STACKS,
               "chart": chart_data(org, UsageFilter(day - timedelta(days=CHART_DAYS - 1), day), stack)}
    if htmx and not htmx.history_restore_request:  # the provider/model toggle redraws only the chart
        return render(PAGE, CHART, **context)
    month = usage_queries.month_to_date(org, day)
    return render_template(
        PAGE, **context,
        member_count=members.headcount(org), month=month, setup_checklist=checklist,
        tops=_top_tables(org, UsageFilter(day.replace(day=1), day)),
        unpriced=usage_queries.unpriced_models(org, limit=UNPRICED_ROWS + 1, start=day.replace(day=1), end=day),
        unpriced_limit=UNPRICED_ROWS,
        prices_url=prices_url(), usd_string=ingest.usd_string,
    )
