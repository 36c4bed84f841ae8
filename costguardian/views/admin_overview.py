"""Platform console: the Overview — organizations, users, active users, events
and spend this month, failed deliveries and queue depth, with 30-day charts."""
from __future__ import annotations


from flask import Blueprint

from costguardian import clock
from costguardian.authz import platform_required
from costguardian.money import usd_decimal
from costguardian.rendering import render
from costguardian.services.platform import health, stats

bp = Blueprint("admin_overview", __name__, url_prefix="/admin")

PAGE = "admin/overview.html"


def _dollars(nanos: int) -> str:
    """Exact chart data ("0.0075"); static/js/charts.js formats it by the money rule."""
    return usd_decimal(nanos)


def charts(figures: stats.Overview) -> dict:
    """The three 30-day charts: Chart.js data (dollars as decimal strings) and
    the same numbers for the tables beside them."""
    labels = [f.key.isoformat() for f in figures.days]
    return {
        "events": {"labels": labels, "unit": "count",
                   "datasets": [{"label": "Events", "data": [f.requests for f in figures.days]}]},
        "spend": {"labels": labels,
                  "datasets": [{"label": "Spend", "data": [_dollars(f.cost_nanos) for f in figures.days]}]},
        "new_users": {"labels": [d.isoformat() for d, _ in figures.new_users], "unit": "count",
                      "datasets": [{"label": "New users", "data": [n for _, n in figures.new_users]}]},
    }


@bp.get("/")
@platform_required("read")
def index():
    figures = stats.overview(clock.now())
    return render(PAGE, PAGE, figures=figures, charts=charts(figures), failed=health.failed_delivery_count(),
                  queue_depth=health.queue_depth())
